//! Console sharing: a board whose only UART is its login console. The host logs nothing in; it finds
//! the shell prompt, types the agent command, and waits until the agent says the console is in raw
//! mode. From then on the line carries frames like any other link; when the session ends the agent
//! restores the console and the shell prompt comes back.

use std::io;
use std::time::{Duration, Instant};

use super::Link;

/// What the agent prints once the console is raw (`CONSOLE_READY` in the agent); frames sent before it
/// would be echoed back and cooked by the shell's line discipline.
pub const AGENT_READY: &str = "ktap: console in raw mode, speaking frames";

/// How long the shell may take to show a prompt after a fresh line.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence on the line that means the shell has printed all of its prompt.
const QUIET: Duration = Duration::from_millis(250);
/// How long the typed agent command may take to start and switch the console to raw mode.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent command typed at the prompt by default (the `deploy` location, else the `PATH`).
pub fn default_agent_command(baud: u32) -> String {
    format!("PATH=\"$PATH:{}\" ktap-agent --console --baud {baud}", super::ssh::REMOTE_DIR)
}

/// Whether the console's output ends at a shell prompt: the last line ends in `# `, `$ `, `> ` or
/// `% ` (ANSI colour codes and carriage returns ignored).
fn at_prompt(seen: &[u8]) -> bool {
    let text = String::from_utf8_lossy(seen);
    let last = text.rsplit(['\n', '\r']).next().unwrap_or("");
    let plain = strip_ansi(last);
    ["# ", "$ ", "> ", "% "].iter().any(|p| plain.ends_with(p))
}

/// `s` without ANSI escape sequences (`ESC [ ... letter`), which coloured prompts carry.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Read until `done(everything so far)` or `timeout`; returns what was read.
fn read_until(
    link: &mut dyn Link,
    timeout: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        if done(&seen) {
            return Ok(Some(seen));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let n = link.read(&mut buf, left.min(Duration::from_millis(200)))?;
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Read until nothing arrived for `quiet` (or `limit` passed); returns what was read.
fn read_quiet(link: &mut dyn Link, quiet: Duration, limit: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        let n = link.read(&mut buf, quiet)?;
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(seen)
}

/// The last `n` characters of what the console showed, printable, for error messages.
fn tail(seen: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(seen)
        .chars()
        .map(|c| if c == '\n' || !c.is_control() { c } else { ' ' })
        .collect();
    let start = text.char_indices().rev().nth(200).map_or(0, |(i, _)| i);
    text[start..].trim().to_owned()
}

/// Find the shell prompt on `link`, type `agent_cmd`, and wait until the agent has the console in raw
/// mode. Errors say what the console showed.
pub fn start_agent(link: &mut dyn Link, agent_cmd: &str) -> io::Result<()> {
    // Ctrl-U clears a half-typed line without the side effects Ctrl-C has on some shells; the newline
    // makes the shell print a fresh prompt.
    link.write_all(b"\x15\r")?;
    let Some(prompt) = read_until(link, PROMPT_TIMEOUT, at_prompt)? else {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no shell prompt on {} within {} s (--console types the agent command at a shell prompt; it does not log in: log in on the console first)",
                link.name(),
                PROMPT_TIMEOUT.as_secs()
            ),
        ));
    };
    // Line-editing shells (busybox ash) ask the terminal where the cursor is after the prompt and
    // swallow input until the answer comes: answer as a terminal would. The question may arrive in a
    // later read than the prompt (a loaded board, a slow line), so the line must go quiet first.
    let mut prompt = prompt;
    prompt.extend(read_quiet(link, QUIET, PROMPT_TIMEOUT)?);
    if prompt.windows(4).any(|w| w == b"\x1b[6n") {
        link.write_all(b"\x1b[1;1R")?;
    }
    link.write_all(format!("{agent_cmd}\r").as_bytes())?;
    let ready = AGENT_READY.as_bytes();
    match read_until(link, READY_TIMEOUT, |s| s.windows(ready.len()).any(|w| w == ready))? {
        Some(_) => Ok(()),
        None => {
            // Whatever the shell answered (`not found`, a usage error) is the useful part; Ctrl-C
            // stops whatever else may be running so the console is left at a prompt.
            let seen = read_until(link, Duration::from_millis(300), |_| false)?.unwrap_or_default();
            let _ = link.write_all(b"\x03");
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "typed `{agent_cmd}` on the console {} but the agent did not start within {} s; the console showed:\n{}",
                    link.name(),
                    READY_TIMEOUT.as_secs(),
                    tail(&seen)
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_recognised_with_colours_and_carriage_returns() {
        assert!(at_prompt(b"login ok\r\nktap# "));
        assert!(at_prompt(b"\r\n\x1b[1;32muser@board\x1b[0m:~$ "));
        assert!(at_prompt(b"root@OpenWrt:/# "));
        assert!(!at_prompt(b"ktap# ls\r\n"));
        assert!(!at_prompt(b"Password: "));
        assert!(!at_prompt(b""));
    }

    #[test]
    fn the_typed_command_never_contains_the_ready_line() {
        assert!(!default_agent_command(115_200).contains(AGENT_READY));
    }
}
