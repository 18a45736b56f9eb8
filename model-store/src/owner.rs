//! Who wrote a staging folder: the writer's process id and start time, encoded in the folder's
//! name, so a later process can tell a live writer (never touched) from a dead one (its
//! leftovers are removed).
//!
//! The start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) tells a reused pid
//! from the writer: a pid that exists with another start time is a different process. Where
//! `/proc` is not available, every writer is taken as alive, so nothing is ever removed by
//! mistake.

use std::sync::OnceLock;

/// A process: id and start time (0 where unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: u32,
    pub start: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Self {
        static CURRENT: OnceLock<Owner> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                pid,
                start: start_time(pid).unwrap_or(0),
            }
        })
    }

    /// `pid.start`, the prefix of a staging folder's name.
    pub fn encode(self) -> String {
        format!("{}.{}", self.pid, self.start)
    }

    /// The writer recorded in a staging folder name `pid.start-...`; the format of older
    /// Pier versions, `pid-...`, gives the pid with an unknown start time.
    pub fn parse(name: &str) -> Option<Self> {
        let first = name.split('-').next()?;
        match first.split_once('.') {
            Some((pid, start)) => Some(Owner {
                pid: pid.parse().ok()?,
                start: start.parse().ok()?,
            }),
            None => Some(Owner {
                pid: first.parse().ok()?,
                start: 0,
            }),
        }
    }

    /// Whether the process still runs. Unknown (no `/proc`) counts as alive.
    pub fn is_alive(self) -> bool {
        if !cfg!(target_os = "linux") {
            return true;
        }
        if self == Self::current() {
            return true;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => match parse_stat(&stat) {
                // A zombie writes nothing more; another start time is another process.
                Some((state, start)) => state != 'Z' && (self.start == 0 || start == self.start),
                None => true,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(_) => true,
        }
    }
}

/// Start time of a process, clock ticks after boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, start)| start)
}

/// `(state, starttime)` from a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state); starttime is field 22.
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "4242 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 19 20";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
    }

    #[test]
    fn names_round_trip_and_old_names_parse() {
        let o = Owner { pid: 12, start: 34 };
        assert_eq!(Owner::parse(&format!("{}-99-1", o.encode())), Some(o));
        assert_eq!(
            Owner::parse("77-1700000000000-3"),
            Some(Owner { pid: 77, start: 0 })
        );
        assert_eq!(Owner::parse("junk"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = Owner::current();
        assert!(me.start > 0);
        assert!(me.is_alive());
        let parent = Owner {
            pid: std::os::unix::process::parent_id(),
            start: 0,
        };
        assert!(parent.is_alive());
        let reused = Owner {
            pid: parent.pid,
            start: start_time(parent.pid).unwrap() + 1,
        };
        assert!(!reused.is_alive(), "same pid, other start time");
        assert!(
            !Owner {
                pid: u32::MAX - 1,
                start: 1
            }
            .is_alive()
        );
    }
}
