//! The probe hits every engine runs on, and the record ring they all write to.

/// One probe hit: what the kernel glue would read from `pt_regs` and `current`.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Task command name (at most 15 bytes, as `TASK_COMM_LEN` allows).
    pub comm: Vec<u8>,
    /// Process and thread id.
    pub pid: i64,
    /// Thread id.
    pub tid: i64,
    /// CPU.
    pub cpu: i64,
    /// Function arguments.
    pub args: [i64; 6],
}

/// A fixed set of hits: eight tasks, pids and sizes spread so tables and histograms fill realistically.
pub fn hits() -> Vec<Hit> {
    const NAMES: [&str; 8] =
        ["sshd", "dd", "kworker/0:1", "busybox", "systemd-journal", "sh", "cat", "ktap-agent"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..64)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let name = NAMES[i % NAMES.len()];
            let pid = 100 + (i % NAMES.len()) as i64 * 37;
            // read sizes from 0 to about a megabyte, log-uniform
            let size = ((x >> 44) as i64) >> (x % 20);
            Hit {
                comm: name.as_bytes().to_vec(),
                pid,
                tid: pid,
                cpu: (i % 2) as i64,
                args: [3, 0x7fff_0000, size, 0, 0, 0],
            }
        })
        .collect()
}

/// A preallocated record ring as the kernel's: each record is a `u16` length and its bytes; a
/// reader is assumed to keep up, so writing wraps to the start instead of dropping.
#[derive(Debug)]
pub struct Ring {
    buf: Vec<u8>,
    head: usize,
    last: std::ops::Range<usize>,
    /// Records written.
    pub records: u64,
}

impl Default for Ring {
    fn default() -> Self {
        Ring { buf: vec![0; 64 * 1024], head: 0, last: 0..0, records: 0 }
    }
}

impl Ring {
    /// Append one record; `false` if it can never fit.
    pub fn push(&mut self, rec: &[u8]) -> bool {
        let need = rec.len() + 2;
        if need > self.buf.len() {
            return false;
        }
        if need > self.buf.len() - self.head {
            self.head = 0;
        }
        let at = self.head;
        self.buf[at..at + 2].copy_from_slice(&(rec.len() as u16).to_le_bytes());
        self.buf[at + 2..at + need].copy_from_slice(rec);
        self.last = at + 2..at + need;
        self.head = at + need;
        self.records += 1;
        true
    }

    /// The first record written (since the last wrap).
    pub fn first(&self) -> &[u8] {
        let len = u16::from_le_bytes([self.buf[0], self.buf[1]]);
        &self.buf[2..2 + usize::from(len)]
    }

    /// The last record written.
    pub fn last(&self) -> &[u8] {
        &self.buf[self.last.clone()]
    }
}
