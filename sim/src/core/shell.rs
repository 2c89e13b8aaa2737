//! The instant backend's guest: a tiny shell over the guest's file map, enough
//! for what provisioning and smoke tests run through `agent/exec`. Commands it
//! does not know succeed silently (a package install "works"); the ones whose
//! output matters (`cat`, `test`, `grep`, `echo`, `cloud-init status`,
//! `systemctl is-active`, ...) behave like their real counterparts.

use super::dpkg;

/// Where cloud-init keeps its outcome (cloud-init `cmd/main.py`,
/// `status_wrapper`): `{"v1": {"datasource": ..., "errors": [...]}}`.
pub const CLOUD_INIT_RESULT: &str = "/run/cloud-init/result.json";

/// Where the shell notes that the guest asked to power off (`poweroff`,
/// `shutdown -h now`, `systemctl poweroff`, ...): the simulator powers the
/// instance off once the script is done.
pub const POWEROFF_REQUESTED: &str = "/run/golden-sim/poweroff";
use super::guestfs::GuestFs;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    pub exitcode: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs a `guest-exec` argv: `sh -c SCRIPT`, `sh FILE` (a script in the
/// guest), or a plain command.
pub fn run_argv(fs: &mut GuestFs, argv: &[String], input: Option<&[u8]>) -> Output {
    let Some(prog) = argv.first() else {
        return Output::default();
    };
    let shell = matches!(
        prog.as_str(),
        "sh" | "/bin/sh" | "bash" | "/bin/bash" | "/usr/bin/bash" | "/usr/bin/sh"
    );
    if shell {
        return match argv.get(1).map(String::as_str) {
            Some("-c") | Some("-ec") | Some("-eu") | Some("-euc") => {
                let errexit = argv[1].contains('e');
                // `sh -c SCRIPT NAME ARGS...`: ARGS are `$1`...
                let script = positional(
                    argv.get(2).map(String::as_str).unwrap_or(""),
                    argv.get(4..).unwrap_or_default(),
                );
                run_script(fs, &script, input, errexit)
            }
            Some(file) if !file.starts_with('-') => match fs.get(file) {
                Some(body) => {
                    let script = String::from_utf8_lossy(body).into_owned();
                    run_script(fs, &script, input, false)
                }
                None => Output {
                    exitcode: 127,
                    stderr: format!("{prog}: 0: cannot open {file}: No such file\n").into_bytes(),
                    ..Output::default()
                },
            },
            _ => {
                let script = input
                    .map(|i| String::from_utf8_lossy(i).into_owned())
                    .unwrap_or_default();
                run_script(fs, &script, None, false)
            }
        };
    }
    let mut st = State::new(fs, false);
    st.command(
        argv.to_vec(),
        input.map(<[u8]>::to_vec),
        Redirects::default(),
    );
    st.finish()
}

/// `$1`..`$9` and `$@` of `sh -c SCRIPT NAME ARGS...`, substituted in the
/// script's text (the shell here has no variables).
fn positional(script: &str, args: &[String]) -> String {
    let mut s = script.replace(
        "\"$@\"",
        &args
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    for (i, a) in args.iter().enumerate().take(9).rev() {
        s = s.replace(&format!("${}", i + 1), a);
    }
    s
}

/// The script without its function definitions (`name() {` to the `}` line
/// that closes it): this shell has no functions; the one golden defines,
/// `step`, is a builtin.
fn without_functions(script: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for line in script.lines() {
        let t = line.trim();
        if depth == 0 && t.ends_with("() {") {
            depth = 1;
            continue;
        }
        if depth > 0 {
            if t.ends_with('{') {
                depth += 1;
            } else if t == "}" {
                depth -= 1;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

pub fn run_script(fs: &mut GuestFs, script: &str, input: Option<&[u8]>, errexit: bool) -> Output {
    let script = &without_functions(script);
    let mut st = State::new(fs, errexit);
    let mut first_input = input.map(<[u8]>::to_vec);
    for (op, pipeline) in parse(script) {
        let run = match op {
            Op::Always => true,
            Op::And => st.status == 0,
            Op::Or => st.status != 0,
        };
        if !run {
            continue;
        }
        let mut piped: Option<Vec<u8>> = first_input.take();
        let n = pipeline.len();
        for (i, cmd) in pipeline.into_iter().enumerate() {
            let (argv, redirects) = split_redirects(cmd);
            if i + 1 < n {
                let before = std::mem::take(&mut st.out.stdout);
                st.command(argv, piped.take(), redirects);
                piped = Some(std::mem::replace(&mut st.out.stdout, before));
            } else {
                st.command(argv, piped.take(), redirects);
            }
        }
        if st.exited || (st.errexit && st.status != 0 && op != Op::Or) {
            break;
        }
    }
    st.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Always,
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Op(&'static str),
}

/// Splits a script into `(how it is chained, pipeline of commands)`.
fn parse(script: &str) -> Vec<(Op, Vec<Vec<String>>)> {
    let mut out = Vec::new();
    let mut op = Op::Always;
    let mut pipeline: Vec<Vec<String>> = Vec::new();
    let mut cmd: Vec<String> = Vec::new();
    let flush = |pipeline: &mut Vec<Vec<String>>, cmd: &mut Vec<String>| {
        if !cmd.is_empty() {
            pipeline.push(std::mem::take(cmd));
        }
    };
    for tok in lex(script) {
        match tok {
            Tok::Word(w) => cmd.push(w),
            Tok::Op("|") => flush(&mut pipeline, &mut cmd),
            Tok::Op(o @ (">" | ">>" | "2>" | "2>&1" | ">&2")) => cmd.push(format!("\u{0}{o}")),
            Tok::Op(o) => {
                flush(&mut pipeline, &mut cmd);
                if !pipeline.is_empty() {
                    out.push((op, std::mem::take(&mut pipeline)));
                }
                op = match o {
                    "&&" => Op::And,
                    "||" => Op::Or,
                    _ => Op::Always,
                };
            }
        }
    }
    flush(&mut pipeline, &mut cmd);
    if !pipeline.is_empty() {
        out.push((op, pipeline));
    }
    out
}

fn lex(s: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    fn end(toks: &mut Vec<Tok>, word: &mut String, in_word: &mut bool) {
        if std::mem::take(in_word) {
            toks.push(Tok::Word(std::mem::take(word)));
        }
    }
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            word.extend(chars.next());
                        }
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    if n != '\n' {
                        in_word = true;
                        word.push(n);
                    }
                }
            }
            '#' if !in_word => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                end(&mut toks, &mut word, &mut in_word);
                toks.push(Tok::Op(";"));
            }
            ' ' | '\t' => end(&mut toks, &mut word, &mut in_word),
            '\n' | ';' => {
                end(&mut toks, &mut word, &mut in_word);
                toks.push(Tok::Op(";"));
            }
            '&' if chars.peek() == Some(&'&') => {
                chars.next();
                end(&mut toks, &mut word, &mut in_word);
                toks.push(Tok::Op("&&"));
            }
            '|' => {
                end(&mut toks, &mut word, &mut in_word);
                if chars.peek() == Some(&'|') {
                    chars.next();
                    toks.push(Tok::Op("||"));
                } else {
                    toks.push(Tok::Op("|"));
                }
            }
            '>' => {
                let fd2 = in_word && word == "2";
                if fd2 {
                    word.clear();
                } else {
                    end(&mut toks, &mut word, &mut in_word);
                }
                in_word = false;
                if chars.peek() == Some(&'>') {
                    chars.next();
                    toks.push(Tok::Op(if fd2 { "2>" } else { ">>" }));
                } else if fd2 && chars.peek() == Some(&'&') {
                    chars.next();
                    chars.next_if_eq(&'1');
                    toks.push(Tok::Op("2>&1"));
                } else if !fd2 && chars.peek() == Some(&'&') {
                    // `>&2`: stdout goes to stderr.
                    chars.next();
                    chars.next_if_eq(&'2');
                    toks.push(Tok::Op(">&2"));
                } else {
                    toks.push(Tok::Op(if fd2 { "2>" } else { ">" }));
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end(&mut toks, &mut word, &mut in_word);
    toks
}

#[derive(Default)]
struct Redirects {
    stdout: Option<(String, bool)>,
    stderr_to_stdout: bool,
    stdout_to_stderr: bool,
    stderr_discard: bool,
}

fn split_redirects(cmd: Vec<String>) -> (Vec<String>, Redirects) {
    let mut argv = Vec::new();
    let mut r = Redirects::default();
    let mut it = cmd.into_iter();
    while let Some(w) = it.next() {
        match w.strip_prefix('\u{0}') {
            Some(">") => r.stdout = it.next().map(|f| (f, false)),
            Some(">>") => r.stdout = it.next().map(|f| (f, true)),
            Some("2>") => {
                it.next();
                r.stderr_discard = true;
            }
            Some("2>&1") => r.stderr_to_stdout = true,
            Some(">&2") => r.stdout_to_stderr = true,
            _ => argv.push(w),
        }
    }
    (argv, r)
}

struct State<'a> {
    fs: &'a mut GuestFs,
    out: Output,
    status: i64,
    exited: bool,
    errexit: bool,
}

impl<'a> State<'a> {
    fn new(fs: &'a mut GuestFs, errexit: bool) -> Self {
        State {
            fs,
            out: Output::default(),
            status: 0,
            exited: false,
            errexit,
        }
    }

    fn finish(mut self) -> Output {
        self.out.exitcode = self.status;
        self.out
    }

    fn command(&mut self, argv: Vec<String>, input: Option<Vec<u8>>, r: Redirects) {
        // `VAR=value cmd ...`: the assignments do not matter here.
        let argv: Vec<String> = argv
            .into_iter()
            .skip_while(|w| {
                w.split_once('=').is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
            })
            .collect();
        let argv: Vec<String> = match argv.first().map(String::as_str) {
            Some("sudo" | "env" | "nohup" | "timeout") => argv.into_iter().skip(1).collect(),
            _ => argv,
        };
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let status = self.exec(&argv, input.as_deref(), &mut stdout, &mut stderr);
        if r.stderr_to_stdout {
            stdout.append(&mut stderr);
        }
        if r.stdout_to_stderr {
            stderr.append(&mut stdout);
        }
        match r.stdout {
            Some((f, _)) if f == "/dev/null" => {}
            // A character device (`/dev/ttyS0`, `/dev/console`) is written
            // to, never truncated.
            Some((f, append)) => {
                let device = f.starts_with("/dev/");
                let entry = self.fs.entry(f).or_default();
                if !append && !device {
                    entry.clear();
                }
                entry.extend(stdout);
            }
            None => self.out.stdout.extend(stdout),
        }
        if !r.stderr_discard {
            self.out.stderr.extend(stderr);
        }
        self.status = status;
    }

    fn read(&self, file: &str, stdin: Option<&[u8]>) -> Option<Vec<u8>> {
        if file == "-" {
            return Some(stdin.unwrap_or_default().to_vec());
        }
        self.fs.get(file).cloned()
    }

    fn exists(&self, path: &str) -> bool {
        let dir = format!("{}/", path.trim_end_matches('/'));
        self.fs.contains_key(path) || self.fs.keys().any(|k| k.starts_with(&dir))
    }

    fn exec(
        &mut self,
        argv: &[String],
        stdin: Option<&[u8]>,
        out: &mut Vec<u8>,
        err: &mut Vec<u8>,
    ) -> i64 {
        let Some(cmd) = argv.first() else {
            return self.status;
        };
        let args = &argv[1..];
        let name = cmd.rsplit('/').next().unwrap_or(cmd);
        match name {
            "true" | ":" => 0,
            "false" => 1,
            "exit" => {
                self.exited = true;
                args.first()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(self.status)
            }
            "set" => {
                if args.iter().any(|a| a.starts_with('-') && a.contains('e')) {
                    self.errexit = true;
                }
                0
            }
            "echo" => {
                let (newline, words) = match args.first().map(String::as_str) {
                    Some("-n") => (false, &args[1..]),
                    _ => (true, args),
                };
                out.extend(words.join(" ").as_bytes());
                if newline {
                    out.push(b'\n');
                }
                0
            }
            "printf" => {
                let fmt = args.first().cloned().unwrap_or_default();
                let mut rest = args.iter().skip(1);
                let text = fmt.replace("\\n", "\n").replace("\\t", "\t");
                let mut s = String::new();
                let mut parts = text.split("%s").peekable();
                while let Some(p) = parts.next() {
                    s.push_str(p);
                    if parts.peek().is_some() {
                        s.push_str(rest.next().map(String::as_str).unwrap_or(""));
                    }
                }
                out.extend(s.as_bytes());
                0
            }
            "cat" => {
                if args.is_empty() {
                    out.extend(stdin.unwrap_or_default());
                    return 0;
                }
                let mut status = 0;
                for f in args {
                    match self.read(f, stdin) {
                        Some(b) => out.extend(b),
                        None => {
                            err.extend(format!("cat: {f}: No such file or directory\n").as_bytes());
                            status = 1;
                        }
                    }
                }
                status
            }
            "test" | "[" => {
                let args: Vec<&str> = args
                    .iter()
                    .map(String::as_str)
                    .filter(|a| *a != "]")
                    .collect();
                let (negate, args) = match args.split_first() {
                    Some((&"!", rest)) => (true, rest.to_vec()),
                    _ => (false, args),
                };
                let ok = match args.as_slice() {
                    ["-f", f] => self.fs.contains_key(*f),
                    ["-e", f] | ["-d", f] => self.exists(f),
                    ["-s", f] => self.fs.get(*f).is_some_and(|b| !b.is_empty()),
                    // Everything is root's here: writable if it exists.
                    ["-w", f] | ["-r", f] => self.exists(f),
                    ["-n", s] => !s.is_empty(),
                    ["-z", s] => s.is_empty(),
                    [a, "=", b] | [a, "==", b] => a == b,
                    [a, "!=", b] => a != b,
                    _ => false,
                };
                i64::from(ok == negate)
            }
            "grep" => self.grep(args, stdin, out, err),
            "cloud-init" => self.cloud_init(args, out),
            // `report RC STEP`, the other function of golden's provisioning
            // script: its marker line.
            "report" if args.len() >= 2 => {
                out.extend(
                    format!("GOLDEN-PROVISION rc={} step={}\n", args[0], args[1]).as_bytes(),
                );
                0
            }
            "poweroff" | "halt" => self.power_off(),
            "shutdown" if !args.iter().any(|a| a == "-r" || a == "-c") => self.power_off(),
            "init" if args.first().is_some_and(|a| a == "0") => self.power_off(),
            "systemctl" if args.first().is_some_and(|a| a == "poweroff" || a == "halt") => {
                self.power_off()
            }
            "systemctl" => {
                match args.first().map(String::as_str) {
                    Some("is-active") => out.extend(b"active\n"),
                    Some("is-enabled") => out.extend(b"enabled\n"),
                    Some("is-system-running") => out.extend(b"running\n"),
                    _ => {}
                }
                0
            }
            "hostname" => {
                out.extend(self.fs.get("/etc/hostname").cloned().unwrap_or_default());
                0
            }
            "uname" => {
                // `uname -r` is the kernel release alone.
                if args.iter().any(|a| a == "-r") {
                    out.extend(b"6.1.0-28-cloud-amd64\n");
                } else {
                    out.extend(b"Linux\n");
                }
                0
            }
            "dpkg-query" => match dpkg::query(self.fs, args) {
                Ok(text) => {
                    out.extend(text.as_bytes());
                    0
                }
                Err(e) => {
                    err.extend(e.as_bytes());
                    2
                }
            },
            "apt-mark" => match dpkg::mark(self.fs, args) {
                Ok(text) => {
                    out.extend(text.as_bytes());
                    0
                }
                Err(e) => {
                    err.extend(e.as_bytes());
                    100
                }
            },
            "apt-get" | "apt" => {
                if args.first().map(String::as_str) == Some("install") {
                    let names: Vec<&str> = args[1..]
                        .iter()
                        .map(String::as_str)
                        .filter(|a| !a.starts_with('-'))
                        .collect();
                    dpkg::install(self.fs, &names);
                }
                0
            }
            // `sed 's/^/PREFIX/' [FILE]`: the one form golden uses.
            "sed" => self.sed_prefix(args, stdin, out, err),
            "touch" => {
                for f in args.iter().filter(|a| !a.starts_with('-')) {
                    self.fs.entry(f.clone()).or_default();
                }
                0
            }
            "rm" => {
                let force = args.iter().any(|a| a.starts_with('-') && a.contains('f'));
                let mut status = 0;
                for f in args.iter().filter(|a| !a.starts_with('-')) {
                    let dir = format!("{}/", f.trim_end_matches('/'));
                    let had = self.fs.remove(f.as_str()).is_some();
                    let before = self.fs.len();
                    self.fs.retain(|k, _| !k.starts_with(&dir));
                    if !had && before == self.fs.len() && !force {
                        err.extend(
                            format!("rm: cannot remove '{f}': No such file or directory\n")
                                .as_bytes(),
                        );
                        status = 1;
                    }
                }
                status
            }
            "cp" | "mv" => {
                let files: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
                let [src, dst] = files.as_slice() else {
                    return 1;
                };
                let Some(body) = self.fs.get(src.as_str()).cloned() else {
                    err.extend(
                        format!("{name}: cannot stat '{src}': No such file or directory\n")
                            .as_bytes(),
                    );
                    return 1;
                };
                if name == "mv" {
                    self.fs.remove(src.as_str());
                }
                self.fs.insert((*dst).clone(), body);
                0
            }
            "sh" | "bash" => {
                let sub = run_argv(self.fs, argv, stdin);
                out.extend(sub.stdout);
                err.extend(sub.stderr);
                sub.exitcode
            }
            // The `step NAME CMD...` function of golden's provisioning script
            // (lib `cloudinit::provision_script`): this shell has no functions,
            // so it knows that one: run CMD, and on failure report and exit.
            "step" if args.len() >= 2 => {
                let sub = run_argv(self.fs, &args[1..], stdin);
                out.extend(format!("golden: {}\n", args[0]).as_bytes());
                out.extend(sub.stdout);
                err.extend(sub.stderr);
                if sub.exitcode != 0 {
                    out.extend(
                        format!("GOLDEN-PROVISION rc={} step={}\n", sub.exitcode, args[0])
                            .as_bytes(),
                    );
                    self.exited = true;
                }
                sub.exitcode
            }
            // A script in the guest run by its path (cloud-init's runcmd
            // `[["/var/lib/golden/provision.sh"]]`): its `#!` says a shell.
            _ if cmd.starts_with('/') && self.is_script(cmd) => {
                let body = String::from_utf8_lossy(&self.fs[cmd.as_str()]).into_owned();
                let sub = run_script(self.fs, &positional(&body, args), stdin, false);
                out.extend(sub.stdout);
                err.extend(sub.stderr);
                sub.exitcode
            }
            // apt-get, mkdir, chmod, useradd, ... and anything else: a quiet success.
            _ => 0,
        }
    }

    /// The guest asked to power off: noted for the simulator.
    fn power_off(&mut self) -> i64 {
        self.fs.insert(POWEROFF_REQUESTED.into(), Vec::new());
        0
    }

    fn is_script(&self, path: &str) -> bool {
        self.fs.get(path).is_some_and(|b| {
            b.starts_with(b"#!/bin/sh")
                || b.starts_with(b"#!/bin/bash")
                || b.starts_with(b"#!/usr/bin/env")
        })
    }

    /// `cloud-init status`: what cloud-init's result file says
    /// (`/run/cloud-init/result.json`, `v1.errors`); a guest without one
    /// (the Proxmox sim's, whose cloud-init is not simulated) is done.
    /// cloud-init 22.4 (Debian 12) exits 1 on `error`.
    fn cloud_init(&mut self, args: &[String], out: &mut Vec<u8>) -> i64 {
        match args.first().map(String::as_str) {
            Some("status") => {
                let errors = self
                    .fs
                    .get(CLOUD_INIT_RESULT)
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .and_then(|v| v["v1"]["errors"].as_array().map(Vec::len))
                    .unwrap_or(0);
                if errors > 0 {
                    out.extend(b"status: error\n");
                    1
                } else {
                    out.extend(b"status: done\n");
                    0
                }
            }
            // `cloud-init clean --logs`: the next boot is a first boot.
            Some("clean") => {
                self.fs.retain(|k, _| {
                    !k.starts_with("/var/lib/cloud/") && !k.starts_with("/run/cloud-init/")
                });
                if args.iter().any(|a| a == "--logs") {
                    self.fs.remove("/var/log/cloud-init.log");
                    self.fs.remove("/var/log/cloud-init-output.log");
                }
                0
            }
            _ => 0,
        }
    }

    fn sed_prefix(
        &self,
        args: &[String],
        stdin: Option<&[u8]>,
        out: &mut Vec<u8>,
        err: &mut Vec<u8>,
    ) -> i64 {
        let Some(prefix) = args
            .first()
            .and_then(|e| e.strip_prefix("s/^/"))
            .and_then(|e| e.strip_suffix('/'))
        else {
            err.extend(b"sed: the simulator's sed knows only s/^/PREFIX/\n");
            return 1;
        };
        let text = match args.get(1) {
            Some(f) => match self.read(f, stdin) {
                Some(b) => b,
                None => {
                    err.extend(
                        format!("sed: can't read {f}: No such file or directory\n").as_bytes(),
                    );
                    return 2;
                }
            },
            None => stdin.unwrap_or_default().to_vec(),
        };
        for line in String::from_utf8_lossy(&text).lines() {
            out.extend(format!("{prefix}{line}\n").as_bytes());
        }
        0
    }

    fn grep(
        &self,
        args: &[String],
        stdin: Option<&[u8]>,
        out: &mut Vec<u8>,
        err: &mut Vec<u8>,
    ) -> i64 {
        let mut quiet = false;
        let mut whole_line = false;
        let mut invert = false;
        let mut rest = Vec::new();
        for a in args {
            match a.strip_prefix('-') {
                Some(flags) if !flags.is_empty() && rest.is_empty() => {
                    quiet |= flags.contains('q');
                    whole_line |= flags.contains('x');
                    invert |= flags.contains('v');
                }
                _ => rest.push(a.as_str()),
            }
        }
        let Some((pattern, files)) = rest.split_first() else {
            err.extend(b"Usage: grep [OPTION]... PATTERNS [FILE]...\n");
            return 2;
        };
        let text = match files.first() {
            Some(f) => match self.read(f, stdin) {
                Some(b) => b,
                None => {
                    if !quiet {
                        err.extend(format!("grep: {f}: No such file or directory\n").as_bytes());
                    }
                    return 2;
                }
            },
            None => stdin.unwrap_or_default().to_vec(),
        };
        let text = String::from_utf8_lossy(&text);
        let mut found = false;
        for line in text.lines() {
            let hit = if whole_line {
                line == *pattern
            } else {
                line.contains(pattern)
            };
            if hit != invert {
                found = true;
                if !quiet {
                    out.extend(line.as_bytes());
                    out.push(b'\n');
                }
            }
        }
        i64::from(!found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> GuestFs {
        let mut fs = GuestFs::new();
        fs.insert("/etc/hostname".into(), b"build-1\n".to_vec());
        fs.insert("/etc/golden".into(), b"a\nfamily=x\n".to_vec());
        fs
    }

    fn sh(fs: &mut GuestFs, script: &str) -> Output {
        run_argv(fs, &["/bin/sh".into(), "-c".into(), script.into()], None)
    }

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn runs_the_commands_smoke_tests_use() {
        let mut fs = fs();
        let o = sh(&mut fs, "cat /etc/hostname");
        assert_eq!((o.exitcode, text(&o.stdout)), (0, "build-1\n"));
        let o = sh(&mut fs, "cloud-init status --wait");
        assert_eq!((o.exitcode, text(&o.stdout)), (0, "status: done\n"));
        assert_eq!(
            sh(&mut fs, "systemctl is-active qemu-guest-agent").stdout,
            b"active\n"
        );
        assert_eq!(sh(&mut fs, "grep -qx family=x /etc/golden").exitcode, 0);
        assert_eq!(sh(&mut fs, "grep -qx family /etc/golden").exitcode, 1);
        assert_eq!(
            sh(&mut fs, "test -f /etc/golden && test -e /etc").exitcode,
            0
        );
        assert_eq!(sh(&mut fs, "test -f /nope").exitcode, 1);
        let o = sh(&mut fs, "cat /nope");
        assert_eq!(o.exitcode, 1);
        assert!(text(&o.stderr).contains("No such file"));
        assert_eq!(
            sh(
                &mut fs,
                "DEBIAN_FRONTEND=noninteractive apt-get install -y curl"
            )
            .exitcode,
            0
        );
    }

    #[test]
    fn stdout_to_stderr_goes_to_stderr() {
        let mut fs = fs();
        let o = sh(&mut fs, "echo boom >&2; exit 1");
        assert_eq!(o.exitcode, 1);
        assert_eq!(text(&o.stderr), "boom\n");
        assert!(o.stdout.is_empty());
        assert!(!fs.contains_key("&2"), "a file named &2 was written");
    }

    #[test]
    fn chains_and_exits_like_sh() {
        let mut fs = fs();
        assert_eq!(sh(&mut fs, "false && echo no; echo yes").stdout, b"yes\n");
        assert_eq!(sh(&mut fs, "false || echo fallback").stdout, b"fallback\n");
        let o = sh(&mut fs, "echo a; exit 3; echo b");
        assert_eq!((o.exitcode, text(&o.stdout)), (3, "a\n"));
        let o = sh(&mut fs, "set -e\nfalse\necho unreachable");
        assert_eq!((o.exitcode, o.stdout.len()), (1, 0));
        let o = sh(
            &mut fs,
            "echo 'hello world' > /tmp/x && cat /tmp/x | grep -q hello",
        );
        assert_eq!(o.exitcode, 0);
        assert_eq!(fs["/tmp/x"], b"hello world\n");
    }

    #[test]
    fn runs_script_files_and_plain_argv() {
        let mut fs = fs();
        fs.insert(
            "/var/lib/golden/p.sh".into(),
            b"#!/bin/sh\necho \"$HOME\" ok\nexit 4\n".to_vec(),
        );
        let o = run_argv(
            &mut fs,
            &["/bin/sh".into(), "/var/lib/golden/p.sh".into()],
            None,
        );
        assert_eq!((o.exitcode, text(&o.stdout)), (4, "$HOME ok\n"));
        let o = run_argv(&mut fs, &["cat".into(), "/etc/hostname".into()], None);
        assert_eq!(text(&o.stdout), "build-1\n");
    }
}

#[cfg(test)]
mod package_tests {
    use super::*;

    fn sh(fs: &mut GuestFs, script: &str) -> Output {
        run_argv(fs, &["sh".into(), "-c".into(), script.into()], None)
    }

    /// golden's package scripts (lib `lifecycle::packages`) and its
    /// provisioning script's `step` function run here as on Debian.
    #[test]
    fn package_manifest_scripts_and_provision_steps_run() {
        let mut fs = super::super::guestfs::debian_fs("build-1");
        let rec = sh(
            &mut fs,
            "mkdir -p /usr/share/golden && dpkg-query -W -f='${db:Status-Abbrev}\\t${Package}\\n' > /usr/share/golden/source-packages",
        );
        assert_eq!(
            rec.exitcode,
            0,
            "{:?}",
            String::from_utf8_lossy(&rec.stderr)
        );
        let listed = String::from_utf8_lossy(&fs["/usr/share/golden/source-packages"]).into_owned();
        assert!(listed.contains("ii \tbash\n"), "{listed:?}");
        let script = "#!/bin/sh\nset -u\nstep() {\n  name=\"$1\"; shift\n  \"$@\"\n  rc=$?\n  if [ \"$rc\" -ne 0 ]; then exit \"$rc\"; fi\n}\nstep 'commands[0]' /bin/sh -c 'apt-get install -y htop'\nstep 'package curl installed' sh -c 'dpkg-query -W -f=\"${db:Status-Status}\" \"$1\" 2>/dev/null | grep -qx installed' _ curl\n";
        fs.insert("/tmp/p.sh".into(), script.as_bytes().to_vec());
        let o = run_argv(&mut fs, &["/bin/sh".into(), "/tmp/p.sh".into()], None);
        assert_eq!(
            o.exitcode,
            1,
            "curl is not installed: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(String::from_utf8_lossy(&o.stdout)
            .contains("GOLDEN-PROVISION rc=1 step=package curl installed"));
        let manual = sh(&mut fs, "apt-mark showmanual | sed 's/^/manual /'");
        assert!(String::from_utf8_lossy(&manual.stdout).contains("manual htop\n"));
    }
}
