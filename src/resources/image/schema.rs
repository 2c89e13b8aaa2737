//! The `golden_image` schema. Descriptions are Markdown; `docs/` follows them.

use std::collections::HashMap;

use tf_provider::schema::{AttributeConstraint as C, AttributeType as T, NestedBlock, Schema};

use crate::resources::values::ImageEntry;
pub(crate) use crate::tfschema::{attr, block};

fn list_str() -> T {
    T::List(Box::new(T::String))
}

fn map_str() -> T {
    T::Map(Box::new(T::String))
}

fn object(fields: &[(&str, T)]) -> T {
    T::Object(
        fields
            .iter()
            .map(|(k, t)| ((*k).to_owned(), t.clone()))
            .collect(),
    )
}

pub fn schema() -> Schema {
    let source = block(
        crate::platforms::registry::source_attributes(),
        "What to build from: one of the attributes the image's platform takes (each says which), plus that platform's settings.",
    );
    let provision = block(
        vec![
            (
                "files",
                attr(
                    map_str(),
                    C::Optional,
                    "Guest path => file content, written before `commands` run.",
                ),
            ),
            (
                "commands",
                attr(
                    list_str(),
                    C::Optional,
                    "Shell commands run as root in order; the first that fails fails the build.",
                ),
            ),
            (
                "services",
                attr(list_str(), C::Optional, "systemd units to enable."),
            ),
        ],
        "Provisioning steps run in the build VM after `packages` are installed: by cloud-init on `local`, through the QEMU guest agent on `proxmox`.",
    );
    let smoke = block(
        vec![
            (
                "checks",
                attr(
                    list_str(),
                    C::Optional,
                    "Any of `boot`, `cloud_init`, `guest_agent`, `ssh`, and the opt-in `minimal` (no package installed that neither the source image nor `packages` accounts for). Default: the first four.",
                ),
            ),
            (
                "commands",
                attr(
                    list_str(),
                    C::Optional,
                    "Shell commands run as root in the test VM; each must exit 0.",
                ),
            ),
            (
                "timeout",
                attr(
                    T::String,
                    C::Optional,
                    "How long the whole smoke test may take, e.g. `10m` (default).",
                ),
            ),
            (
                "allow_degraded",
                attr(
                    T::Bool,
                    C::Optional,
                    "Accept cloud-init's `degraded` result (recoverable errors). Default false.",
                ),
            ),
        ],
        "The boot test every new image must pass before it is published.",
    );
    let retention = block(
        vec![
            ("keep", attr(T::Number, C::Required, "How many images of the family to keep (>= 1). The newest validated image is never deleted.")),
            ("max_age", attr(T::String, C::Optional, "Images older than this duration (`2160h`) are pruned even within `keep`; the newest validated image is never deleted, however old.")),
        ],
        "How many images to keep, and for how long. Deletions are listed in `prune`, with their reasons in `prune_reasons`, at plan time.",
    );
    let timeouts = block(
        vec![
            ("create", attr(T::String, C::Optional, "Default `60m`.")),
            ("update", attr(T::String, C::Optional, "Default `60m`.")),
            ("delete", attr(T::String, C::Optional, "Default `10m`.")),
        ],
        "Operation timeouts as durations (`30m`, `1h`).",
    );
    let check = object(&[
        ("name", T::String),
        ("ok", T::Bool),
        ("duration_ms", T::Number),
        ("detail", T::String),
    ]);
    let validation = object(&[
        ("passed", T::Bool),
        ("checks", T::List(Box::new(check))),
        ("console_tail", T::String),
        ("duration_ms", T::Number),
        ("finished_at", T::String),
    ]);
    let packages_changed = object(&[
        ("since", T::String),
        ("added", list_str()),
        ("removed", list_str()),
        ("upgraded", list_str()),
    ]);
    let attributes = vec![
        ("platform", attr(T::String, C::Required, &format!("Where the family lives: one of {}.", crate::platforms::registry::names()))),
        ("family", attr(T::String, C::Required, "The image family: a lowercase letter, then `[a-z0-9-]` (and `.` where the platform allows), at most 50 characters. Images are named `{family}-{YYYYMMDD}-{NNN}`.")),
        ("packages", attr(list_str(), C::Optional, "Packages installed in the build VM (cloud-init on `local`, `apt-get` through the guest agent on `proxmox`).")),
        ("tags", attr(map_str(), C::Optional, "Tags stored on every image of the family; `os` and `type` also become `golden-os` / `golden-type`. Changing tags re-tags in place, no rebuild.")),
        ("rebuild_after", attr(T::String, C::Optional, "Plan a rebuild once the newest image is older than this, e.g. `720h`.")),
        ("triggers", attr(map_str(), C::Optional, "Arbitrary values; any change plans a rebuild.")),
        ("on_destroy", attr(T::String, C::Optional, "`keep` (default): destroy leaves the images in place. `delete`: destroy deletes every image golden built for the family.")),
        ("id", attr(T::String, C::Computed, "`<platform>/<family>`.")),
        ("name", attr(T::String, C::Computed, "Name of the newest validated image.")),
        ("image_id", attr(T::String, C::Computed, "Platform identifier of that image: a file path on `local`, the template's VM id on `proxmox`.")),
        ("build_date", attr(T::String, C::Computed, "Its UTC build date, `YYYYMMDD`.")),
        ("build_number", attr(T::Number, C::Computed, "Its build number within that day.")),
        ("recipe_hash", attr(T::String, C::Computed, "Hash of the recipe (source, packages, provision, smoke_test, builder major version). A change rebuilds.")),
        ("validated", attr(T::Bool, C::Computed, "True when the current image passed its smoke test.")),
        ("validation", attr(validation, C::Computed, "The smoke-test report of the current image: each check with its result, duration and detail.")),
        ("packages_changed", attr(packages_changed, C::Computed, "What changed in the current image's Debian packages since the family's previous validated image (`since`): `added` and `removed` as `name version`, `upgraded` as `name old -> new`. Null when either image has no package manifest.")),
        ("images", attr(T::List(Box::new(ImageEntry::schema_type())), C::Computed, "Every image golden built for the family, newest first, with status.")),
        ("prune", attr(list_str(), C::Computed, "Images this apply deletes under `retention`; shown by `terraform plan`.")),
        ("prune_reasons", attr(map_str(), C::Computed, "Why each image in `prune` goes: `beyond keep = N` or `older than max_age = \"D\"`.")),
    ];
    let mut b = block(attributes, "A family of golden images: built, boot-tested, published and pruned inside `terraform apply`.");
    b.blocks = HashMap::from([
        ("source".to_owned(), NestedBlock::Optional(source)),
        ("provision".to_owned(), NestedBlock::Optional(provision)),
        ("smoke_test".to_owned(), NestedBlock::Optional(smoke)),
        ("retention".to_owned(), NestedBlock::Optional(retention)),
        ("timeouts".to_owned(), NestedBlock::Optional(timeouts)),
    ]);
    Schema {
        version: 1,
        block: b,
    }
}
