//! The QEMU runner shared by the `local` platform and the test simulators:
//! qcow2 overlays and flattening, NoCloud seeds, VMs with a serial log, a QMP
//! monitor, a guest-agent channel and an SSH port forward, and accelerator
//! detection. Every VM is killed on every exit path: `Drop`, the cleanup
//! ledger, and `PR_SET_PDEATHSIG` should the provider itself die.

pub mod accel;
pub mod img;
pub mod qga;
pub mod qmp;
pub mod seed;
pub mod vm;

pub use accel::{Accel, AccelChoice};
pub use vm::{Vm, VmSpec};
