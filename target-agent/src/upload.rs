//! Image upload: `LoadBegin{len}`, `LoadChunk{offset, data}`... in order, `LoadEnd`, reassembled into a
//! fixed buffer the caller owns (the binary passes a static `[u8; MAX_IMAGE]`).
//!
//! The link may lose or corrupt any message, so the host resends: a chunk at another offset than the
//! next expected one (a repeat, or one after a lost chunk) is not an error but [`Step::Stale`], and
//! the session answers with the offset it wants (`LoadAck{next}`). Refused are only uploads that can
//! never succeed (too large, a chunk overrunning the announced length, `LoadEnd` before the last
//! byte); after a refusal the rest of that upload is ignored until the next `LoadBegin`, so one
//! attempt gets one refusal.

use ktap_protocol::wire::codes;

/// A refusal, answered as `AgentMsg::Rejected` with these fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// `codes::BAD_UPLOAD` or `codes::IMAGE_TOO_LARGE`.
    pub code: u16,
    /// The image offset the agent expected next (0 for a too-large image).
    pub offset: u32,
    /// The offending chunk offset, the announced length, or the agent's limit (saturated to `i32`).
    pub detail: i32,
}

/// What a message did to the upload.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'b> {
    /// Accepted; nothing to answer yet.
    Continue,
    /// A chunk at another offset than the next expected (a repeat or a gap): not taken.
    Stale,
    /// Part of an upload that was already refused: say nothing.
    Ignored,
    /// Refuse the upload.
    Refuse(Refusal),
    /// `LoadEnd` of a complete upload: the image.
    Complete(&'b [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No upload begun (or the last one finished).
    Idle,
    /// Receiving `len` bytes, `got` so far.
    Receiving { len: usize, got: usize },
    /// Refused; ignore until the next `LoadBegin`.
    Failed,
}

/// Reassembles one image at a time into `buf`.
#[derive(Debug)]
pub struct Upload<'b> {
    buf: &'b mut [u8],
    phase: Phase,
}

fn sat(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl<'b> Upload<'b> {
    /// An upload buffer; images up to `buf.len()` bytes are accepted.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Upload { buf, phase: Phase::Idle }
    }

    /// Forget any upload in progress.
    pub fn reset(&mut self) {
        self.phase = Phase::Idle;
    }

    /// Whether an upload is in progress.
    pub fn in_progress(&self) -> bool {
        matches!(self.phase, Phase::Receiving { .. })
    }

    /// The next image offset expected, while an upload is in progress.
    pub fn next(&self) -> Option<u32> {
        match self.phase {
            Phase::Receiving { got, .. } => u32::try_from(got).ok(),
            _ => None,
        }
    }

    /// `LoadBegin{len}`: start over (replacing any unfinished upload).
    pub fn begin(&mut self, len: u32) -> Step<'_> {
        let len = len as usize;
        if len > self.buf.len() {
            self.phase = Phase::Failed;
            return Step::Refuse(Refusal {
                code: codes::IMAGE_TOO_LARGE,
                offset: 0,
                detail: sat(self.buf.len()),
            });
        }
        self.phase = Phase::Receiving { len, got: 0 };
        Step::Continue
    }

    /// `LoadChunk{offset, data}`: taken when it continues exactly where the last chunk ended.
    pub fn chunk(&mut self, offset: u32, data: &[u8]) -> Step<'_> {
        let (len, got) = match self.phase {
            Phase::Receiving { len, got } => (len, got),
            // a late repeat of a finished or refused upload's chunk
            Phase::Failed | Phase::Idle => return Step::Ignored,
        };
        if offset as usize != got {
            return Step::Stale;
        }
        let end = got.saturating_add(data.len());
        let Some(dst) = self.buf.get_mut(got..end).filter(|_| end <= len) else {
            return self.fail(got, sat(end));
        };
        dst.copy_from_slice(data);
        self.phase = Phase::Receiving { len, got: end };
        Step::Continue
    }

    /// `LoadEnd`: the image if every announced byte arrived.
    pub fn end(&mut self) -> Step<'_> {
        match self.phase {
            Phase::Receiving { len, got } if got == len => {
                self.phase = Phase::Idle;
                match self.buf.get(..len) {
                    Some(image) => Step::Complete(image),
                    None => Step::Refuse(Refusal { code: codes::BAD_UPLOAD, offset: 0, detail: sat(len) }),
                }
            }
            Phase::Receiving { len, got } => self.fail(got, sat(len)),
            Phase::Failed => {
                self.phase = Phase::Idle;
                Step::Ignored
            }
            Phase::Idle => self.fail(0, 0),
        }
    }

    fn fail(&mut self, expected: usize, detail: i32) -> Step<'_> {
        self.phase = Phase::Failed;
        Step::Refuse(Refusal {
            code: codes::BAD_UPLOAD,
            offset: u32::try_from(expected).unwrap_or(u32::MAX),
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(offset: u32, detail: i32) -> Step<'static> {
        Step::Refuse(Refusal { code: codes::BAD_UPLOAD, offset, detail })
    }

    #[test]
    fn in_order_chunks_reassemble() {
        let mut buf = [0u8; 16];
        let mut up = Upload::new(&mut buf);
        assert_eq!(up.begin(6), Step::Continue);
        assert_eq!(up.chunk(0, b"abc"), Step::Continue);
        assert_eq!(up.chunk(3, b"def"), Step::Continue);
        assert_eq!(up.end(), Step::Complete(b"abcdef"));
        assert!(!up.in_progress());
    }

    #[test]
    fn empty_chunks_and_empty_image_are_fine() {
        let mut buf = [0u8; 4];
        let mut up = Upload::new(&mut buf);
        assert_eq!(up.begin(0), Step::Continue);
        assert_eq!(up.chunk(0, b""), Step::Continue);
        assert_eq!(up.end(), Step::Complete(b""));
    }

    #[test]
    fn oversize_is_refused_and_its_chunks_ignored() {
        let mut buf = [0u8; 4];
        let mut up = Upload::new(&mut buf);
        assert_eq!(up.begin(5), Step::Refuse(Refusal { code: codes::IMAGE_TOO_LARGE, offset: 0, detail: 4 }));
        assert_eq!(up.chunk(0, b"ab"), Step::Ignored);
        assert_eq!(up.end(), Step::Ignored);
        // the next upload starts clean
        assert_eq!(up.begin(2), Step::Continue);
        assert_eq!(up.chunk(0, b"ab"), Step::Continue);
        assert_eq!(up.end(), Step::Complete(b"ab"));
    }

    #[test]
    fn gaps_and_repeats_are_stale_and_the_upload_goes_on() {
        let mut buf = [0u8; 16];
        let mut up = Upload::new(&mut buf);
        up.begin(9);
        assert_eq!(up.chunk(0, b"abc"), Step::Continue);
        assert_eq!(up.chunk(6, b"ghi"), Step::Stale);
        assert_eq!(up.chunk(0, b"abc"), Step::Stale);
        assert_eq!(up.next(), Some(3));
        assert_eq!(up.chunk(3, b"def"), Step::Continue);
        assert_eq!(up.chunk(6, b"ghi"), Step::Continue);
        assert_eq!(up.end(), Step::Complete(b"abcdefghi"));
        assert_eq!(up.chunk(6, b"ghi"), Step::Ignored, "a late repeat after the end");
    }

    #[test]
    fn overrun_short_and_unbegun_uploads_are_refused() {
        let mut buf = [0u8; 16];
        let mut up = Upload::new(&mut buf);
        up.begin(4);
        assert_eq!(up.chunk(0, b"abcde"), bad(0, 5));

        up.begin(4);
        up.chunk(0, b"ab");
        assert_eq!(up.end(), bad(2, 4));

        let mut up = Upload::new(&mut buf);
        assert_eq!(up.chunk(0, b"ab"), Step::Ignored);
        let mut up = Upload::new(&mut buf);
        assert_eq!(up.end(), bad(0, 0));
    }

    #[test]
    fn huge_offsets_saturate() {
        let mut buf = [0u8; 16];
        let mut up = Upload::new(&mut buf);
        up.begin(4);
        assert_eq!(up.chunk(u32::MAX, b"a"), Step::Stale);
        assert_eq!(up.chunk(0, b"abcde"), bad(0, 5));
    }

    #[test]
    fn begin_replaces_an_unfinished_upload() {
        let mut buf = [0u8; 16];
        let mut up = Upload::new(&mut buf);
        up.begin(6);
        up.chunk(0, b"xyz");
        assert!(up.in_progress());
        up.begin(2);
        up.chunk(0, b"ok");
        assert_eq!(up.end(), Step::Complete(b"ok"));
    }
}
