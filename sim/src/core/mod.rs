//! The simulator core: what every simulated platform API shares, so that a
//! simulator module (`proxmox` today; DigitalOcean and GCP next) holds only
//! what is its API's own. See docs/adr/007-simulator-core.md.
//!
//! - `server`: HTTP(S) on loopback (`tls`: a self-signed certificate made at
//!   start), one flow for every request: the admin API under `/_sim`, the
//!   latency fault, the `auth` hook, the simulator's routes, the request log.
//! - `state`: the shared state behind one mutex and the records every
//!   simulator keeps (`log`: requests, `violations`: schema violations,
//!   `faults`: the fault book).
//! - `admin`: the `/_sim` endpoints every simulator has.
//! - `spec`: the spec-checker trait (PVE apidoc); `openapi`: OpenAPI 3
//!   descriptions (DigitalOcean) and `discovery`: Google API discovery
//!   documents (GCE), as spec checkers.
//! - `ops`: the operation engine (PVE tasks, DO actions, GCE operations).
//! - `guestfs`, `shell`, `dpkg`, `cloudinit`: the instant backends' guest: a
//!   file map, a tiny shell over it, a dpkg/apt database in it and
//!   cloud-init's first boot (DigitalOcean and GCE droplets/instances).
//! - `guest`: the QEMU guest backend (a real guest: serial log, agent
//!   channel, optional SSH port forward) over `golden::qemu`.

pub mod admin;
pub mod auth;
pub mod cloudinit;
pub mod discovery;
pub mod dpkg;
pub mod faults;
pub mod guest;
pub mod guestfs;
pub mod log;
pub mod openapi;
pub mod ops;
pub mod server;
pub mod shell;
pub mod spec;
pub mod state;
pub mod tls;
pub mod util;
pub mod violations;
