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
                        '$' if chars.peek() == Some(&'?') => {
                            chars.next();
                            word.push(LAST_STATUS);
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
            '$' if chars.peek() == Some(&'?') => {
                chars.next();
                in_word = true;
                word.push(LAST_STATUS);
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

/// `$?` outside single quotes, as the lexer leaves it: replaced by the last
/// status when the command runs (POSIX: "the decimal exit status of the
/// most recent pipeline").
const LAST_STATUS: char = '\u{1}';

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

/// The command a wrapper runs: `sudo [-u U] CMD`, `env [-i] [-u N] [K=V]...
/// CMD`, `nohup CMD`, `command CMD` (not `-v`), `timeout [-k D] [-s SIG]
/// [--preserve-status] [--foreground] [-v] DURATION CMD` (GNU coreutils
/// `timeout --help`), and `VAR=value` assignments in front. The instant
/// guest runs everything at once, so no timeout ever expires. A wrapper
/// without its command: coreutils' "missing operand", status 125.
fn unwrap_command(mut argv: Vec<String>) -> Result<Vec<String>, (String, i64)> {
    loop {
        let assignment = |w: &String| {
            w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        };
        let skip = match argv.first().map(String::as_str) {
            Some(w) if assignment(&argv[0]) && !w.is_empty() => 1,
            Some("nohup") => 1,
            Some("command") if argv.get(1).is_some_and(|a| !a.starts_with('-')) => 1,
            Some("sudo") => 1 + options(&argv[1..], &["-u", "-g", "-C", "-D", "-h", "-p", "-U"]),
            Some("env") => 1 + options(&argv[1..], &["-u", "-C", "-S"]),
            Some("timeout") => {
                let opts = 1 + options(&argv[1..], &["-k", "-s"]);
                if argv.len() <= opts + 1 {
                    return Err((
                        "timeout: missing operand\nTry 'timeout --help' for more information.\n"
                            .into(),
                        125,
                    ));
                }
                opts + 1
            }
            _ => return Ok(argv),
        };
        argv.drain(..skip.min(argv.len()));
    }
}

/// How many words of `args` are options (`-x`, `--long`, `--long=v`, and
/// the ones in `with_value` followed by their value), up to `--` (which
/// is counted) or the first operand.
fn options(args: &[String], with_value: &[&str]) -> usize {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "--" {
            return i + 1;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        i += if with_value.contains(&a.as_str()) {
            2
        } else {
            1
        };
    }
    i.min(args.len())
}

/// `printf FORMAT ARGS...` (POSIX printf(1)): `%s`, `%b` (escapes in the
/// argument), `%d`/`%i`, `%c`, `%%`, backslash escapes in the format; the
/// format is reused while arguments remain.
fn printf(fmt: &str, args: &[String]) -> String {
    fn escapes(s: &str, out: &mut String) {
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some('0') => {}
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        }
    }
    let mut out = String::new();
    let mut rest = args.iter();
    loop {
        let mut used = false;
        let mut chars = fmt.chars().peekable();
        let mut lit = String::new();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            escapes(&std::mem::take(&mut lit), &mut out);
            let mut spec = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() || "-+ #.".contains(d) {
                    spec.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            let conv = chars.next().unwrap_or('%');
            if conv == '%' {
                out.push('%');
                continue;
            }
            let arg = rest.next().map(String::as_str);
            used |= arg.is_some();
            let arg = arg.unwrap_or("");
            let text = match conv {
                'b' => {
                    let mut t = String::new();
                    escapes(arg, &mut t);
                    t
                }
                'd' | 'i' => arg.trim().parse::<i64>().unwrap_or(0).to_string(),
                'c' => arg.chars().next().map(String::from).unwrap_or_default(),
                _ => arg.to_owned(),
            };
            let width: usize = spec.trim_start_matches('-').parse().unwrap_or(0);
            if spec.starts_with('-') {
                out.push_str(&format!("{text:<width$}"));
            } else {
                out.push_str(&format!("{text:>width$}"));
            }
        }
        escapes(&lit, &mut out);
        if !used || rest.len() == 0 {
            return out;
        }
    }
}

/// Where the shell queues the transient units `systemd-run` starts without
/// waiting (`--no-block`, or no `--wait`/`--pipe`/`--scope`): one JSON
/// argv a line. They run once what started them is over
/// (`run_started_units`): after cloud-init's run, the startup script, the
/// agent's command.
pub const STARTED_UNITS: &str = "/run/golden-sim/units";

/// Runs the transient units queued by `systemd-run` (and those they start)
/// in order; their output is the journal's, returned to the caller.
pub fn run_started_units(fs: &mut GuestFs) -> Output {
    let mut all = Output::default();
    for _ in 0..100 {
        let Some(queued) = fs.remove(STARTED_UNITS) else {
            break;
        };
        for line in String::from_utf8_lossy(&queued).lines() {
            let Ok(argv) = serde_json::from_str::<Vec<String>>(line) else {
                continue;
            };
            let o = run_argv(fs, &argv, None);
            all.stdout.extend(o.stdout);
            all.stderr.extend(o.stderr);
            all.exitcode = o.exitcode;
        }
    }
    all
}

/// Programs a guest may lack: present only when their file is in the
/// guest's file map. `cloud-init`: Google's Debian images have none, its
/// Ubuntu images, DigitalOcean's and Proxmox's cloud images do (each
/// simulator's image puts `/usr/bin/cloud-init` there or not).
const OPTIONAL_PROGRAMS: &[(&str, &str)] = &[("cloud-init", "/usr/bin/cloud-init")];

/// dash's builtins (`command -v` prints their bare name).
const BUILTINS: &[&str] = &[
    ".", ":", "[", "alias", "bg", "break", "cd", "command", "continue", "echo", "eval", "exec",
    "exit", "export", "false", "fg", "getopts", "hash", "jobs", "kill", "printf", "pwd", "read",
    "readonly", "return", "set", "shift", "test", "times", "trap", "true", "type", "ulimit",
    "umask", "unalias", "unset", "wait",
];

/// A Debian 12 image's programs the shell knows, and where they are
/// (merged /usr: `/bin` is `/usr/bin`; PATH puts `/usr/sbin` first).
const BASE_PROGRAMS: &[(&str, &str)] = &[
    ("apt", "/usr/bin"),
    ("apt-get", "/usr/bin"),
    ("apt-mark", "/usr/bin"),
    ("base64", "/usr/bin"),
    ("bash", "/usr/bin"),
    ("cat", "/usr/bin"),
    ("chmod", "/usr/bin"),
    ("chown", "/usr/bin"),
    ("cp", "/usr/bin"),
    ("dpkg", "/usr/bin"),
    ("dpkg-query", "/usr/bin"),
    ("env", "/usr/bin"),
    ("grep", "/usr/bin"),
    ("halt", "/usr/sbin"),
    ("hostname", "/usr/bin"),
    ("ln", "/usr/bin"),
    ("ls", "/usr/bin"),
    ("mkdir", "/usr/bin"),
    ("mv", "/usr/bin"),
    ("nohup", "/usr/bin"),
    ("poweroff", "/usr/sbin"),
    ("reboot", "/usr/sbin"),
    ("rm", "/usr/bin"),
    ("sed", "/usr/bin"),
    ("sh", "/usr/bin"),
    ("shutdown", "/usr/sbin"),
    ("sleep", "/usr/bin"),
    ("sudo", "/usr/bin"),
    ("sync", "/usr/bin"),
    ("systemctl", "/usr/bin"),
    ("systemd-run", "/usr/bin"),
    ("tee", "/usr/bin"),
    ("timeout", "/usr/bin"),
    ("touch", "/usr/bin"),
    ("uname", "/usr/bin"),
    ("useradd", "/usr/sbin"),
];

/// `PATH` as Debian's root has it.
const PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

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
        // `VAR=value cmd ...`: the assignments do not matter here
        // (`unwrap_command` drops them).
        let status = self.status.to_string();
        let argv: Vec<String> = argv
            .into_iter()
            .map(|w| w.replace(LAST_STATUS, &status))
            .collect();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let status = match unwrap_command(argv) {
            Ok(argv) => self.exec(&argv, input.as_deref(), &mut stdout, &mut stderr),
            Err((msg, rc)) => {
                stderr.extend(msg.as_bytes());
                rc
            }
        };
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
        if let Some((_, file)) = OPTIONAL_PROGRAMS.iter().find(|(n, _)| *n == name) {
            if !self.fs.contains_key(*file) {
                // dash's answer for a program that is not there.
                err.extend(format!("sh: 1: {cmd}: not found\n").as_bytes());
                return 127;
            }
        }
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
                let Some((fmt, rest)) = args.split_first() else {
                    err.extend(b"printf: usage: printf format [arguments]\n");
                    return 2;
                };
                out.extend(printf(fmt, rest).as_bytes());
                0
            }
            "base64" => self.base64(args, stdin, out, err),
            "command" | "which" | "type"
                if name != "command" || args.first().is_some_and(|a| a == "-v" || a == "-V") =>
            {
                let names = if name == "command" { &args[1..] } else { args };
                let verbose = name == "type" || args.first().is_some_and(|a| a == "-V");
                let mut status = 0;
                for n in names {
                    match self.which(n) {
                        Some(path) if verbose && path == *n => {
                            out.extend(format!("{n} is a shell builtin\n").as_bytes())
                        }
                        Some(path) if verbose => out.extend(format!("{n} is {path}\n").as_bytes()),
                        Some(path) => out.extend(format!("{path}\n").as_bytes()),
                        None => {
                            if verbose {
                                out.extend(format!("{n}: not found\n").as_bytes());
                            }
                            status = 1;
                        }
                    }
                }
                status
            }
            "systemd-run" => self.systemd_run(args, stdin, out, err),
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
            // Like the function, it writes the first console device the
            // guest has, then stdout.
            "report" if args.len() >= 2 => {
                self.report(&args[0], &args[1], out);
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
                    self.report(&sub.exitcode.to_string(), &args[0], out);
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

    /// golden's `report RC STEP`: the marker on the first console device
    /// the guest has (`[ -w "$c" ]`), then on stdout.
    fn report(&mut self, rc: &str, step: &str, out: &mut Vec<u8>) {
        let line = format!("GOLDEN-PROVISION rc={rc} step={step}\n");
        if let Some(dev) = ["/dev/ttyS0", "/dev/console"]
            .into_iter()
            .find(|d| self.fs.contains_key(*d))
        {
            self.fs
                .entry(dev.to_owned())
                .or_default()
                .extend(line.as_bytes());
        }
        out.extend(line.as_bytes());
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
                let result = self
                    .fs
                    .get(CLOUD_INIT_RESULT)
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .unwrap_or_default();
                // `--long` adds `detail:` and the datasource or the first
                // error (cloud-init `cmd/status.py`; from memory, not
                // verified against a given version).
                let long = args.iter().any(|a| a == "--long" || a == "-l");
                let detail = |what: &str| {
                    if long {
                        format!("detail:\n{what}\n")
                    } else {
                        String::new()
                    }
                };
                if errors > 0 {
                    let first = result["v1"]["errors"][0].as_str().unwrap_or("").to_owned();
                    out.extend(format!("status: error\n{}", detail(&first)).as_bytes());
                    1
                } else {
                    let ds = result["v1"]["datasource"]
                        .as_str()
                        .unwrap_or("DataSourceNone");
                    out.extend(format!("status: done\n{}", detail(ds)).as_bytes());
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

    /// `command -v NAME`: a builtin's name, a path for a program the
    /// guest has (a file on PATH, a package installed, a base program),
    /// else nothing (status 1).
    fn which(&self, n: &str) -> Option<String> {
        if n.contains('/') {
            return self.fs.contains_key(n).then(|| n.to_owned());
        }
        if BUILTINS.contains(&n) {
            return Some(n.to_owned());
        }
        for dir in PATH {
            let path = format!("{dir}/{n}");
            if self.fs.contains_key(&path) {
                return Some(path);
            }
        }
        if OPTIONAL_PROGRAMS.iter().any(|(o, _)| *o == n) {
            return None;
        }
        if let Some((_, dir)) = BASE_PROGRAMS.iter().find(|(p, _)| *p == n) {
            return Some(format!("{dir}/{n}"));
        }
        dpkg::installed(self.fs)
            .iter()
            .any(|p| p.name == n)
            .then(|| format!("/usr/bin/{n}"))
    }

    /// `systemd-run [OPTIONS] CMD ARGS...` (systemd-run(1)): with `--scope`,
    /// `--pipe` or `--wait` it runs CMD now and answers its status (only
    /// `--scope`/`--pipe` pass its output on; `--wait`'s goes to the
    /// journal); otherwise it starts a transient service and returns at
    /// once ("Running as unit: NAME.service" on stderr unless `--quiet`),
    /// and CMD runs once the caller is done (`STARTED_UNITS`).
    fn systemd_run(
        &mut self,
        args: &[String],
        stdin: Option<&[u8]>,
        out: &mut Vec<u8>,
        err: &mut Vec<u8>,
    ) -> i64 {
        const WITH_VALUE: &[&str] = &[
            "-u",
            "--unit",
            "-p",
            "--property",
            "--description",
            "--slice",
            "-E",
            "--setenv",
            "--uid",
            "--gid",
            "--working-directory",
            "--nice",
            "--service-type",
            "-M",
            "--machine",
            "-H",
            "--host",
            "--on-active",
            "--on-boot",
            "--on-startup",
            "--on-unit-active",
            "--on-unit-inactive",
            "--on-calendar",
            "--timer-property",
            "--path-property",
            "--socket-property",
        ];
        let n = options(args, WITH_VALUE);
        let opts = &args[..n];
        let Some(cmd) = args.get(n..).filter(|c| !c.is_empty()) else {
            err.extend(b"Command line to execute required.\n");
            return 1;
        };
        let has = |flags: &[&str]| opts.iter().any(|o| flags.contains(&o.as_str()));
        let unit = opts.iter().enumerate().find_map(|(i, o)| match o.as_str() {
            "-u" | "--unit" => opts.get(i + 1).cloned(),
            o => o.strip_prefix("--unit=").map(str::to_owned),
        });
        if has(&["--scope", "--pipe", "-P", "--wait", "-W"]) {
            let sub = run_argv(self.fs, cmd, stdin);
            if has(&["--scope", "--pipe", "-P"]) {
                out.extend(sub.stdout);
                err.extend(sub.stderr);
            }
            return sub.exitcode;
        }
        let unit = match unit {
            Some(u) if u.contains('.') => u,
            Some(u) => format!("{u}.service"),
            None => format!("run-u{}.service", 100 + self.fs.len()),
        };
        if !has(&["-q", "--quiet"]) {
            err.extend(format!("Running as unit: {unit}\n").as_bytes());
        }
        let queued = self.fs.entry(STARTED_UNITS.to_owned()).or_default();
        queued.extend(serde_json::to_string(cmd).unwrap_or_default().as_bytes());
        queued.push(b'\n');
        0
    }

    /// `base64 [-d] [-i] [-w COLS] [FILE]` (GNU coreutils): decoding skips
    /// newlines; anything else that is not base64 is "invalid input",
    /// status 1.
    fn base64(
        &self,
        args: &[String],
        stdin: Option<&[u8]>,
        out: &mut Vec<u8>,
        err: &mut Vec<u8>,
    ) -> i64 {
        use base64::Engine;
        let mut decode = false;
        let mut ignore_garbage = false;
        let mut wrap = 76usize;
        let mut file = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-d" | "--decode" => decode = true,
                "-i" | "--ignore-garbage" => ignore_garbage = true,
                "-di" | "-id" => (decode, ignore_garbage) = (true, true),
                "-w" | "--wrap" => wrap = it.next().and_then(|w| w.parse().ok()).unwrap_or(76),
                w => match w.strip_prefix("--wrap=") {
                    Some(cols) => wrap = cols.parse().unwrap_or(76),
                    None => file = Some(w),
                },
            }
        }
        let input = match file {
            Some(f) => match self.read(f, stdin) {
                Some(b) => b,
                None => {
                    err.extend(format!("base64: {f}: No such file or directory\n").as_bytes());
                    return 1;
                }
            },
            None => stdin.unwrap_or_default().to_vec(),
        };
        let engine = base64::engine::general_purpose::STANDARD;
        if decode {
            let text: Vec<u8> = input
                .into_iter()
                .filter(|c| !c.is_ascii_whitespace())
                .filter(|c| !ignore_garbage || c.is_ascii_alphanumeric() || b"+/=".contains(c))
                .collect();
            match engine.decode(&text) {
                Ok(bytes) => {
                    out.extend(bytes);
                    0
                }
                Err(_) => {
                    err.extend(b"base64: invalid input\n");
                    1
                }
            }
        } else {
            let text = engine.encode(&input);
            if wrap == 0 {
                out.extend(text.as_bytes());
            } else {
                for chunk in text.as_bytes().chunks(wrap) {
                    out.extend(chunk);
                    out.push(b'\n');
                }
                return 0;
            }
            out.push(b'\n');
            0
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
        // A cloud image: it has cloud-init.
        fs.insert(super::super::guestfs::CLOUD_INIT.into(), Vec::new());
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

#[cfg(test)]
mod wrapper_tests {
    use super::super::guestfs::{debian_fs, without_cloud_init};
    use super::*;

    fn sh(fs: &mut GuestFs, script: &str) -> Output {
        run_argv(fs, &["sh".into(), "-c".into(), script.into()], None)
    }

    fn text(o: &Output) -> String {
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    #[test]
    fn last_status_expands_outside_single_quotes() {
        let mut fs = debian_fs("x");
        assert_eq!(text(&sh(&mut fs, "false; echo \"rc=$?\"")), "rc=1\n");
        assert_eq!(text(&sh(&mut fs, "true; echo rc=$?")), "rc=0\n");
        assert_eq!(text(&sh(&mut fs, "false; echo 'rc=$?'")), "rc=$?\n");
        assert_eq!(text(&sh(&mut fs, "false; echo \\$?")), "$?\n");
        // `a && b || c`: $? in c is the status of the last pipeline run.
        assert_eq!(
            text(&sh(
                &mut fs,
                "sh -c 'exit 3' && echo ok || echo \"failed rc=$?\""
            )),
            "failed rc=3\n"
        );
        assert_eq!(
            text(&sh(
                &mut fs,
                "true && sh -c 'exit 4' || echo \"failed rc=$?\""
            )),
            "failed rc=4\n"
        );
        let o = sh(&mut fs, "sh -c 'exit 5'; exit $?");
        assert_eq!(o.exitcode, 5);
    }

    #[test]
    fn timeout_env_sudo_nohup_run_their_command() {
        let mut fs = debian_fs("x");
        for cmd in [
            "timeout 600 echo hi",
            "timeout -k 5 -s KILL 10m echo hi",
            "timeout --kill-after=5 --signal=TERM --preserve-status 1h echo hi",
            "timeout --foreground 5 sh -c 'echo hi'",
            "sudo -u root env -i A=1 B=2 nohup echo hi",
            "X=1 command echo hi",
        ] {
            let o = sh(&mut fs, cmd);
            assert_eq!((o.exitcode, text(&o)), (0, "hi\n".to_owned()), "{cmd}");
        }
        assert_eq!(sh(&mut fs, "timeout 5 sh -c 'exit 7'").exitcode, 7);
        let o = sh(&mut fs, "timeout 5");
        assert_eq!(o.exitcode, 125);
        assert!(String::from_utf8_lossy(&o.stderr).contains("missing operand"));
    }

    #[test]
    fn command_v_follows_what_the_guest_has() {
        let mut fs = debian_fs("x");
        assert_eq!(
            text(&sh(&mut fs, "command -v cloud-init")),
            "/usr/bin/cloud-init\n"
        );
        assert_eq!(text(&sh(&mut fs, "command -v sh")), "/usr/bin/sh\n");
        assert_eq!(text(&sh(&mut fs, "command -v echo")), "echo\n");
        assert_eq!(
            text(&sh(&mut fs, "command -v poweroff")),
            "/usr/sbin/poweroff\n"
        );
        assert_eq!(
            text(&sh(&mut fs, "command -v systemctl")),
            "/usr/bin/systemctl\n"
        );
        assert_eq!(sh(&mut fs, "command -v nginx").exitcode, 1);
        sh(&mut fs, "apt-get install -y nginx");
        assert_eq!(sh(&mut fs, "command -v nginx").exitcode, 0);
        without_cloud_init(&mut fs);
        let o = sh(&mut fs, "command -v cloud-init");
        assert_eq!((o.exitcode, text(&o)), (1, String::new()));
        let o = sh(&mut fs, "cloud-init status --wait");
        assert_eq!(o.exitcode, 127);
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "sh: 1: cloud-init: not found\n"
        );
        // golden's provisioning step skips cloud-init's reset then.
        let o = sh(
            &mut fs,
            "command -v cloud-init >/dev/null || exit 0; cloud-init clean --logs",
        );
        assert_eq!(o.exitcode, 0);
        assert!(!fs.contains_key("/usr/bin/cloud-init"));
        let q = sh(
            &mut fs,
            "dpkg-query -W -f='${Package}\\n' | grep -qx cloud-init",
        );
        assert_eq!(q.exitcode, 1, "the package is gone too");
        sh(&mut fs, "apt-get install -y cloud-init");
        assert_eq!(sh(&mut fs, "command -v cloud-init").exitcode, 0);
    }

    #[test]
    fn base64_and_printf() {
        let mut fs = debian_fs("x");
        // "#!/bin/sh\necho hi\n"
        let o = sh(
            &mut fs,
            "echo 'IyEvYmluL3NoCmVjaG8gaGkK' | base64 -d > /var/lib/golden/a.sh",
        );
        assert_eq!(o.exitcode, 0, "{o:?}");
        assert_eq!(fs["/var/lib/golden/a.sh"], b"#!/bin/sh\necho hi\n");
        fs.insert("/tmp/b64".into(), b"aGVs\nbG8=\n".to_vec());
        assert_eq!(text(&sh(&mut fs, "base64 -d /tmp/b64")), "hello");
        assert_eq!(
            text(&sh(&mut fs, "printf '%s' hello | base64")),
            "aGVsbG8=\n"
        );
        let o = sh(&mut fs, "echo '@@@' | base64 -d");
        assert_eq!(o.exitcode, 1);
        assert_eq!(text(&sh(&mut fs, "printf '%s'")), "");
        assert_eq!(text(&sh(&mut fs, "printf '%s' 'a b'")), "a b");
        assert_eq!(text(&sh(&mut fs, "printf '%s\\n' a b c")), "a\nb\nc\n");
        assert_eq!(
            text(&sh(&mut fs, "printf 'rc=%d %s%%\\n' 3 x")),
            "rc=3 x%\n"
        );
        assert_eq!(text(&sh(&mut fs, "printf 'x\\ty\\n'")), "x\ty\n");
    }

    #[test]
    fn systemd_run_starts_a_unit_that_runs_after_its_caller() {
        let mut fs = debian_fs("x");
        fs.insert(
            "/var/lib/golden/s.sh".into(),
            b"#!/bin/sh\necho \"unit ran rc=$?\" > /tmp/unit\n".to_vec(),
        );
        let o = sh(
            &mut fs,
            "systemd-run --no-block --unit golden-smoke -p TimeoutStartSec=0 --collect /var/lib/golden/s.sh; echo started",
        );
        assert_eq!((o.exitcode, text(&o)), (0, "started\n".to_owned()));
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            "Running as unit: golden-smoke.service\n"
        );
        assert!(!fs.contains_key("/tmp/unit"), "--no-block: not yet");
        run_started_units(&mut fs);
        assert_eq!(fs["/tmp/unit"], b"unit ran rc=0\n");
        assert!(!fs.contains_key(STARTED_UNITS));
        // --wait: now, with the command's status; --pipe passes its output.
        let o = sh(&mut fs, "systemd-run --wait -q --unit=x sh -c 'exit 6'");
        assert_eq!(o.exitcode, 6);
        let o = sh(&mut fs, "systemd-run --pipe --wait sh -c 'echo piped'");
        assert_eq!(text(&o), "piped\n");
        assert_eq!(sh(&mut fs, "systemd-run --no-block").exitcode, 1);
    }

    #[test]
    fn cloud_init_status_long_has_the_detail() {
        let mut fs = debian_fs("x");
        fs.insert(
            CLOUD_INIT_RESULT.into(),
            br#"{"v1": {"datasource": "DataSourceGCE", "errors": []}}"#.to_vec(),
        );
        let o = sh(&mut fs, "cloud-init status --wait --long");
        assert_eq!(
            (o.exitcode, text(&o)),
            (0, "status: done\ndetail:\nDataSourceGCE\n".to_owned())
        );
        fs.insert(
            CLOUD_INIT_RESULT.into(),
            br#"{"v1": {"datasource": "DataSourceGCE", "errors": ["scripts-user: runcmd exited 1"]}}"#.to_vec(),
        );
        let o = sh(&mut fs, "cloud-init status --long");
        assert_eq!(o.exitcode, 1);
        assert!(
            text(&o).starts_with("status: error\ndetail:\nscripts-user"),
            "{}",
            text(&o)
        );
    }
}
