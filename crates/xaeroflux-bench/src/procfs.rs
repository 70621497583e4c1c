//! What Linux's `/proc` says of processes, for measurements and tests that look at a node from
//! outside: its children by name, the fields of its status.

/// The value after `key` (say `"VmRSS:"`) in the text of a `/proc/…/status` file, trimmed:
/// `"12345 kB"`, or a thread's name after `"Name:"`.
pub fn status_value<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
}

/// The pids of the children of process `parent` whose command name is `comm` (say, the `tor`
/// a node started). Empty where `/proc` cannot be read.
pub fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the name may hold spaces and parentheses, so it is what
        // lies between the first `(` and the last `)`.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if name == comm && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}
