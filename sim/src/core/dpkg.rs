//! The instant backend's package database: dpkg's status file and apt's
//! auto-installed marks in the guest's file map, so `dpkg-query -W -f`,
//! `apt-mark showmanual` and `apt-get install` answer as on a Debian guest
//! (dpkg `/var/lib/dpkg/status` stanzas, apt `/var/lib/apt/extended_states`).
//! A package `apt-get install` adds gets version `1.0-1`, architecture
//! `amd64`, and is marked manual, as apt marks what it was asked for.

use super::guestfs::GuestFs;

pub const STATUS: &str = "/var/lib/dpkg/status";
pub const EXTENDED: &str = "/var/lib/apt/extended_states";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkg {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The source package, when it differs from the name.
    pub source: Option<String>,
}

/// A Debian 12 cloud image's packages (a few of them): name, version,
/// architecture, source package, installed as a dependency.
const BASE: &[(&str, &str, &str, &str, bool)] = &[
    ("apt", "2.6.1", "amd64", "", false),
    ("base-files", "12.4+deb12u8", "amd64", "", false),
    ("bash", "5.2.15-2+b7", "amd64", "", false),
    ("cloud-init", "22.4.2-1+deb12u1", "all", "", false),
    ("coreutils", "9.1-1", "amd64", "", false),
    ("dpkg", "1.21.22", "amd64", "", false),
    ("libc6", "2.36-9+deb12u9", "amd64", "glibc", true),
    ("libssl3", "3.0.15-1~deb12u1", "amd64", "openssl", true),
    (
        "openssh-server",
        "1:9.2p1-2+deb12u3",
        "amd64",
        "openssh",
        false,
    ),
    (
        "qemu-guest-agent",
        "1:7.2+dfsg-7+deb12u7",
        "amd64",
        "qemu",
        false,
    ),
    ("systemd", "252.33-1~deb12u1", "amd64", "", false),
];

/// Writes the base packages into a new guest's file map.
pub fn seed(fs: &mut GuestFs) {
    let pkgs: Vec<Pkg> = BASE
        .iter()
        .map(|(name, version, arch, source, _)| Pkg {
            name: (*name).into(),
            version: (*version).into(),
            arch: (*arch).into(),
            source: (!source.is_empty()).then(|| (*source).to_owned()),
        })
        .collect();
    write_status(fs, &pkgs);
    let auto: Vec<&str> = BASE.iter().filter(|b| b.4).map(|b| b.0).collect();
    write_auto(fs, &auto);
}

fn stanzas(text: &str) -> impl Iterator<Item = Vec<(&str, &str)>> {
    text.split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_once(": "))
                .collect::<Vec<_>>()
        })
}

fn field<'a>(stanza: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    stanza.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

pub fn installed(fs: &GuestFs) -> Vec<Pkg> {
    let text = String::from_utf8_lossy(fs.get(STATUS).map(Vec::as_slice).unwrap_or_default());
    stanzas(&text)
        .filter(|s| field(s, "Status") == Some("install ok installed"))
        .filter_map(|s| {
            Some(Pkg {
                name: field(&s, "Package")?.to_owned(),
                version: field(&s, "Version")?.to_owned(),
                arch: field(&s, "Architecture").unwrap_or("amd64").to_owned(),
                source: field(&s, "Source").map(str::to_owned),
            })
        })
        .collect()
}

fn auto_marked(fs: &GuestFs) -> Vec<String> {
    let text = String::from_utf8_lossy(fs.get(EXTENDED).map(Vec::as_slice).unwrap_or_default());
    stanzas(&text)
        .filter(|s| field(s, "Auto-Installed") == Some("1"))
        .filter_map(|s| field(&s, "Package").map(str::to_owned))
        .collect()
}

fn write_status(fs: &mut GuestFs, pkgs: &[Pkg]) {
    let mut text = String::new();
    for p in pkgs {
        text += &format!(
            "Package: {}\nStatus: install ok installed\nArchitecture: {}\n",
            p.name, p.arch
        );
        if let Some(src) = &p.source {
            text += &format!("Source: {src}\n");
        }
        text += &format!("Version: {}\n\n", p.version);
    }
    fs.insert(STATUS.into(), text.into_bytes());
}

fn write_auto(fs: &mut GuestFs, auto: &[&str]) {
    let text: String = auto
        .iter()
        .map(|n| format!("Package: {n}\nArchitecture: amd64\nAuto-Installed: 1\n\n"))
        .collect();
    fs.insert(EXTENDED.into(), text.into_bytes());
}

/// `apt-get install PKG...`: each becomes installed and manual.
pub fn install(fs: &mut GuestFs, names: &[&str]) {
    let mut pkgs = installed(fs);
    for name in names {
        let name = name.split('=').next().unwrap_or(name);
        if !pkgs.iter().any(|p| p.name == name) {
            pkgs.push(Pkg {
                name: name.to_owned(),
                version: "1.0-1".into(),
                arch: "amd64".into(),
                source: None,
            });
        }
    }
    pkgs.sort_by(|a, b| a.name.cmp(&b.name));
    write_status(fs, &pkgs);
    if names
        .iter()
        .any(|n| n.split('=').next() == Some("cloud-init"))
    {
        fs.insert(super::guestfs::CLOUD_INIT.into(), Vec::new());
    }
    let auto: Vec<String> = auto_marked(fs)
        .into_iter()
        .filter(|a| !names.contains(&a.as_str()))
        .collect();
    write_auto(fs, &auto.iter().map(String::as_str).collect::<Vec<_>>());
}

/// A package gone (`apt-get purge`, or an image built without it).
pub fn remove(fs: &mut GuestFs, name: &str) {
    let mut pkgs = installed(fs);
    pkgs.retain(|p| p.name != name);
    write_status(fs, &pkgs);
}

/// `dpkg-query -W -f=FORMAT`: one line per installed package, with dpkg's
/// `${Field}` substitutions and backslash escapes.
pub fn query(fs: &GuestFs, args: &[String]) -> Result<String, String> {
    let mut format = "${binary:Package}\t${Version}\n".to_owned();
    let mut list = false;
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-W" || a == "--show" {
            list = true;
        } else if let Some(f) = a
            .strip_prefix("-f=")
            .or_else(|| a.strip_prefix("--showformat="))
        {
            format = f.to_owned();
        } else if a == "-f" || a == "--showformat" {
            format = it.next().cloned().unwrap_or_default();
        } else if !a.starts_with('-') {
            names.push(a.as_str());
        }
    }
    if !list {
        return Err("dpkg-query: need an action option\n".into());
    }
    let pkgs: Vec<Pkg> = installed(fs)
        .into_iter()
        .filter(|p| names.is_empty() || names.contains(&p.name.as_str()))
        .collect();
    if let Some(missing) = names.iter().find(|n| !pkgs.iter().any(|p| p.name == **n)) {
        return Err(format!(
            "dpkg-query: no packages found matching {missing}\n"
        ));
    }
    let format = format.replace("\\t", "\t").replace("\\n", "\n");
    Ok(pkgs
        .iter()
        .map(|p| {
            format
                .replace("${db:Status-Abbrev}", "ii ")
                .replace("${db:Status-Status}", "installed")
                .replace("${binary:Package}", &p.name)
                .replace("${Package}", &p.name)
                .replace("${Version}", &p.version)
                .replace("${Architecture}", &p.arch)
                .replace("${source:Package}", p.source.as_deref().unwrap_or(&p.name))
        })
        .collect())
}

/// `apt-mark showmanual` / `showauto`.
pub fn mark(fs: &GuestFs, args: &[String]) -> Result<String, String> {
    let auto = auto_marked(fs);
    let names = installed(fs).into_iter().map(|p| p.name);
    let pick: Vec<String> = match args.first().map(String::as_str) {
        Some("showmanual") => names.filter(|n| !auto.contains(n)).collect(),
        Some("showauto") => names.filter(|n| auto.contains(n)).collect(),
        _ => return Err("E: Invalid operation\n".into()),
    };
    Ok(pick.iter().map(|n| format!("{n}\n")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn installs_are_manual_and_queries_format_like_dpkg() {
        let mut fs = GuestFs::new();
        seed(&mut fs);
        let manual = mark(&fs, &strings(&["showmanual"])).unwrap();
        assert!(manual.contains("bash\n") && !manual.contains("libc6"));
        install(&mut fs, &["jq", "libc6"]);
        let manual = mark(&fs, &strings(&["showmanual"])).unwrap();
        assert!(manual.contains("jq\n") && manual.contains("libc6\n"));
        let q = query(
            &fs,
            &strings(&[
                "-W",
                "-f=${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${source:Package}\\n",
            ]),
        )
        .unwrap();
        assert!(q.contains("ii \tjq\t1.0-1\tjq\n"), "{q}");
        assert!(q.contains("ii \tlibc6\t2.36-9+deb12u9\tglibc\n"), "{q}");
        assert!(query(&fs, &[]).is_err());
    }
}
