//! What is inside an image: its Debian package manifest and kernel, read in
//! the booted image by the smoke test; what changed since the previous
//! validated image of the family; the `minimal` rule; an SPDX export.
//!
//! The guest side is one shell script (`guest_script`) whose output lines
//! are tagged: `kernel`, `pkg` (installed packages), `manual` (`apt-mark
//! showmanual`) and `source` (the packages the source image had, recorded
//! by the build before it installed anything: `SOURCE_LIST`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Where a build records the source image's installed packages before it
/// installs anything. Not under `/var/lib/golden`, the build's scratch
/// directory that provisioning removes at its end.
pub const SOURCE_LIST: &str = "/usr/share/golden/source-packages";

/// Shell that writes [`SOURCE_LIST`] (run by the build before packages):
/// dpkg's status abbreviation and name per package, `ii` being installed.
/// Plain `sh`, no `$(...)` or `awk`: the PVE simulator's guest runs it too.
pub fn record_source_script() -> String {
    format!(
        "mkdir -p /usr/share/golden && dpkg-query -W -f='${{db:Status-Abbrev}}\\t${{Package}}\\n' > {SOURCE_LIST}"
    )
}

/// Shell the smoke test runs in the booted image to read its manifest.
pub fn guest_script() -> String {
    format!(
        "printf 'kernel '; uname -r; \
         dpkg-query -W -f='pkg ${{db:Status-Abbrev}}\\t${{Package}}\\t${{Version}}\\t${{Architecture}}\\t${{source:Package}}\\n'; \
         apt-mark showmanual | sed 's/^/manual /'; \
         sed 's/^/source /' {SOURCE_LIST}; true"
    )
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The source package it was built from.
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageManifest {
    /// `uname -r` of the booted image.
    pub kernel: String,
    /// Installed packages, by name.
    pub packages: Vec<Package>,
    /// Packages installed on purpose (not as a dependency).
    #[serde(default)]
    pub manual: BTreeSet<String>,
    /// The source image's packages, when the build recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_packages: Option<BTreeSet<String>>,
}

/// Added, removed and upgraded (or downgraded) packages, each sorted by name:
/// `name version`, and `name old -> new` for a version change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageChanges {
    /// The image compared against (`family-YYYYMMDD-NNN`).
    pub since: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub upgraded: Vec<String>,
}

impl PackageManifest {
    /// Parses [`guest_script`]'s output; only fully installed packages
    /// (`ii`) count. `None` when no package line came back (not a Debian
    /// family guest, or dpkg missing).
    pub fn parse(out: &str) -> Option<PackageManifest> {
        let mut m = PackageManifest::default();
        let mut source = BTreeSet::new();
        let mut saw_source = false;
        for line in out.lines() {
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            match tag {
                "kernel" => m.kernel = rest.trim().to_owned(),
                "pkg" => {
                    let f: Vec<&str> = rest.split('\t').collect();
                    if f.len() < 4 || !f[0].starts_with("ii") {
                        continue;
                    }
                    let source = f.get(4).map(|s| s.trim()).filter(|s| !s.is_empty());
                    m.packages.push(Package {
                        name: f[1].to_owned(),
                        version: f[2].to_owned(),
                        arch: f[3].to_owned(),
                        source: source.unwrap_or(f[1]).to_owned(),
                    });
                }
                "manual" => {
                    m.manual.insert(rest.trim().to_owned());
                }
                "source" => {
                    saw_source = true;
                    // `ii \tname` as recorded; a bare name is taken as installed.
                    match rest.split_once('\t') {
                        Some((status, name)) if status.starts_with("ii") => {
                            source.insert(name.trim().to_owned());
                        }
                        Some(_) => {}
                        None => {
                            source.insert(rest.trim().to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        if m.packages.is_empty() {
            return None;
        }
        m.packages.sort();
        m.source_packages = saw_source.then_some(source);
        Some(m)
    }

    /// Version by package, a multi-arch package once per architecture
    /// (`libc6:i386`); the native one (or `all`) goes by its name alone.
    fn versions(&self) -> BTreeMap<String, &str> {
        let native = self.native_arch();
        self.packages
            .iter()
            .map(|p| {
                let key = if p.arch == native || p.arch == "all" {
                    p.name.clone()
                } else {
                    format!("{}:{}", p.name, p.arch)
                };
                (key, p.version.as_str())
            })
            .collect()
    }

    /// The architecture most packages have.
    fn native_arch(&self) -> String {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for p in self.packages.iter().filter(|p| p.arch != "all") {
            *count.entry(p.arch.as_str()).or_default() += 1;
        }
        count
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(a, _)| a.to_owned())
            .unwrap_or_default()
    }

    /// What changed from `previous` (the family's previous validated image,
    /// named `since`) to this manifest.
    pub fn changes_since(&self, previous: &PackageManifest, since: &str) -> PackageChanges {
        let (old, new) = (previous.versions(), self.versions());
        let mut c = PackageChanges {
            since: since.to_owned(),
            ..Default::default()
        };
        for (name, version) in &new {
            match old.get(name) {
                None => c.added.push(format!("{name} {version}")),
                Some(was) if was != version => {
                    c.upgraded.push(format!("{name} {was} -> {version}"))
                }
                Some(_) => {}
            }
        }
        for (name, version) in &old {
            if !new.contains_key(name) {
                c.removed.push(format!("{name} {version}"));
            }
        }
        c
    }

    /// The `minimal` rule: packages installed on purpose that neither the
    /// source image had nor the recipe's `packages` lists (their
    /// dependencies are installed as automatic, so they pass). `Err` when
    /// the source image's list was not recorded.
    pub fn unaccounted(&self, recipe_packages: &[String]) -> Result<Vec<String>, String> {
        let Some(source) = &self.source_packages else {
            return Err(format!(
                "the build did not record the source image's packages ({SOURCE_LIST} is missing)"
            ));
        };
        let installed: BTreeSet<&str> = self.packages.iter().map(|p| p.name.as_str()).collect();
        // `packages` may pin (`curl=8.5.0-2`) or name an architecture (`libc6:amd64`).
        let wanted: BTreeSet<&str> = recipe_packages
            .iter()
            .map(|p| p.split(['=', ':']).next().unwrap_or(p))
            .collect();
        Ok(self
            .manual
            .iter()
            .map(|m| m.split(':').next().unwrap_or(m))
            .filter(|m| installed.contains(m) && !source.contains(*m) && !wanted.contains(m))
            .map(str::to_owned)
            .collect())
    }

    /// The manifest as text for stores that hold little: a `kernel` line,
    /// then `name\tversion\tarch\tsource` per package. What the previous
    /// image's manifest is needed for (its versions) survives; the manual
    /// and source lists, used only by the build that read them, do not.
    pub fn to_lines(&self) -> String {
        let mut s = format!("kernel\t{}\n", self.kernel);
        for p in &self.packages {
            s += &format!("{}\t{}\t{}\t{}\n", p.name, p.version, p.arch, p.source);
        }
        s
    }

    /// The inverse of [`to_lines`](Self::to_lines).
    pub fn from_lines(text: &str) -> Option<PackageManifest> {
        let mut m = PackageManifest::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["kernel", k] => m.kernel = (*k).to_owned(),
                [name, version, arch, source] => m.packages.push(Package {
                    name: (*name).to_owned(),
                    version: (*version).to_owned(),
                    arch: (*arch).to_owned(),
                    source: (*source).to_owned(),
                }),
                _ => return None,
            }
        }
        (!m.packages.is_empty()).then_some(m)
    }

    /// A short digest of the package list, for metadata that cannot hold it.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for p in &self.packages {
            h.update(format!("{}\t{}\t{}\n", p.name, p.version, p.arch));
        }
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// SPDX 2.3 JSON: one package per installed Debian package, with its
    /// `pkg:deb` purl, described by the image.
    pub fn to_spdx(&self, image: &str, created: &str) -> Value {
        // Unique per entry: names may differ only in `+` vs `-`, and a
        // multi-arch package is listed once per architecture.
        let id = |i: usize, p: &Package| {
            format!(
                "SPDXRef-Package-{}-{}-{i}",
                spdx_id(&p.name),
                spdx_id(&p.arch)
            )
        };
        let packages: Vec<Value> = self
            .packages
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({
                    "SPDXID": id(i, p),
                    "name": p.name,
                    "versionInfo": p.version,
                    "downloadLocation": "NOASSERTION",
                    "supplier": "NOASSERTION",
                    "sourceInfo": format!("built from source package {}", p.source),
                    "externalRefs": [{
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": format!(
                            "pkg:deb/debian/{}@{}?arch={}",
                            purl_escape(&p.name),
                            purl_escape(&p.version),
                            p.arch
                        ),
                    }],
                })
            })
            .collect();
        let relationships: Vec<Value> = self
            .packages
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({
                    "spdxElementId": "SPDXRef-DOCUMENT",
                    "relationshipType": "DESCRIBES",
                    "relatedSpdxElement": id(i, p),
                })
            })
            .collect();
        json!({
            "spdxVersion": "SPDX-2.3",
            "dataLicense": "CC0-1.0",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": image,
            "documentNamespace": format!("https://golden.invalid/spdx/{image}-{}", self.digest()),
            "creationInfo": {
                "created": created,
                "creators": [format!("Tool: terraform-provider-golden-{}", super::recipe::BUILDER_VERSION)],
                "comment": format!("kernel {}", self.kernel),
            },
            "packages": packages,
            "relationships": relationships,
        })
    }
}

/// SPDX ids allow letters, digits, `.` and `-`.
fn spdx_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn purl_escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace('+', "%2B")
        .replace(':', "%3A")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "kernel 6.1.0-28-cloud-amd64\n\
pkg ii \tbase-files\t12.4+deb12u8\tamd64\t\n\
pkg ii \tlibc6\t2.36-9+deb12u9\tamd64\tglibc\n\
pkg rc \told-thing\t1.0\tamd64\t\n\
pkg ii \tcurl\t7.88.1-10+deb12u8\tamd64\t\n\
pkg ii \tlibcurl4\t7.88.1-10+deb12u8\tamd64\tcurl\n\
pkg ii \tjq\t1.6-2.1\tamd64\t\n\
manual base-files\n\
manual curl\n\
manual jq\n\
source ii \tbase-files\n\
source ii \tlibc6\n\
source rc \tgone\n";

    #[test]
    fn the_guest_output_parses_to_installed_packages_only() {
        let m = PackageManifest::parse(OUT).unwrap();
        assert_eq!(m.kernel, "6.1.0-28-cloud-amd64");
        let names: Vec<&str> = m.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["base-files", "curl", "jq", "libc6", "libcurl4"]);
        assert_eq!(m.packages[3].source, "glibc");
        assert_eq!(
            m.packages[0].source, "base-files",
            "no source field: itself"
        );
        assert_eq!(m.source_packages.as_ref().unwrap().len(), 2);
        assert_eq!(PackageManifest::parse("kernel x\n"), None);
    }

    #[test]
    fn changes_since_the_previous_image() {
        let new = PackageManifest::parse(OUT).unwrap();
        let old = PackageManifest::parse(
            "kernel 6.1.0-27\npkg ii \tbase-files\t12.4+deb12u7\tamd64\t\npkg ii \tlibc6\t2.36-9+deb12u9\tamd64\tglibc\npkg ii \tnano\t7.2-1\tamd64\t\n",
        )
        .unwrap();
        let c = new.changes_since(&old, "fam-20261101-001");
        assert_eq!(c.since, "fam-20261101-001");
        assert_eq!(
            c.added,
            [
                "curl 7.88.1-10+deb12u8",
                "jq 1.6-2.1",
                "libcurl4 7.88.1-10+deb12u8"
            ]
        );
        assert_eq!(c.removed, ["nano 7.2-1"]);
        assert_eq!(c.upgraded, ["base-files 12.4+deb12u7 -> 12.4+deb12u8"]);
        // A second architecture of a package is its own entry.
        let mut multi = new.clone();
        multi.packages.push(Package {
            name: "libc6".into(),
            version: "2.36-9+deb12u9".into(),
            arch: "i386".into(),
            source: "glibc".into(),
        });
        let c = multi.changes_since(&new, "y");
        assert_eq!(c.added, ["libc6:i386 2.36-9+deb12u9"]);
        assert!(c.upgraded.is_empty(), "{c:?}");
        let same = new.changes_since(&new, "x");
        assert!(same.added.is_empty() && same.removed.is_empty() && same.upgraded.is_empty());
    }

    #[test]
    fn minimal_names_what_nobody_asked_for() {
        let m = PackageManifest::parse(OUT).unwrap();
        // curl is in the recipe (its libcurl4 is automatic); jq is not.
        assert_eq!(m.unaccounted(&["curl".into()]).unwrap(), ["jq"]);
        assert!(m
            .unaccounted(&["curl=7.88.1-10+deb12u8".into(), "jq".into()])
            .unwrap()
            .is_empty());
        let mut no_source = m.clone();
        no_source.source_packages = None;
        assert!(no_source
            .unaccounted(&[])
            .unwrap_err()
            .contains(SOURCE_LIST));
    }

    #[test]
    fn spdx_export_lists_every_package_with_a_purl() {
        let m = PackageManifest::parse(OUT).unwrap();
        let doc = m.to_spdx("fam-20261201-001", "2026-12-01T10:00:00Z");
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["packages"].as_array().unwrap().len(), 5);
        let libc = &doc["packages"][3];
        assert_eq!(libc["name"], "libc6");
        assert_eq!(
            libc["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u9?arch=amd64"
        );
        assert_eq!(doc["relationships"].as_array().unwrap().len(), 5);
        let ids: std::collections::BTreeSet<&str> = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["SPDXID"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 5, "SPDX ids are unique");
        assert_eq!(m.digest().len(), 16);
    }

    #[test]
    fn the_compact_form_keeps_what_a_comparison_needs() {
        let m = PackageManifest::parse(OUT).unwrap();
        let back = PackageManifest::from_lines(&m.to_lines()).unwrap();
        assert_eq!(back.packages, m.packages);
        assert_eq!(back.kernel, m.kernel);
        assert!(back.changes_since(&m, "x").upgraded.is_empty());
        assert_eq!(PackageManifest::from_lines("garbage"), None);
    }

    #[test]
    fn the_source_list_script_keeps_installed_names() {
        let s = record_source_script();
        assert!(
            s.contains(SOURCE_LIST) && s.contains("${db:Status-Abbrev}"),
            "{s}"
        );
    }
}
