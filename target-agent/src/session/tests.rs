//! Session tests against the in-memory device and link, with the clock as a plain number.

use std::vec;
use std::vec::Vec;

use ktap_protocol::frame;
use ktap_protocol::image::{Image, SectionKind};
use ktap_protocol::kdev::KStats;
use ktap_protocol::wire::{
    self, AgentMsg, CHUNK, HEARTBEAT_INTERVAL_MS, HEARTBEAT_TIMEOUT_MS, HostMsg, PROTOCOL_VERSION, Stats,
    codes,
};

use super::*;
use crate::fakes::{FakeDevice, FakeLink, image, rec};

const BUILD_ID: [u8; 20] = [0xb1; 20];
const INFO: BoardInfo<'static> = BoardInfo {
    machine: "armv7l",
    release: "6.1.0-50-armmp",
    build_id: &BUILD_ID,
    base_symbol: "_stext",
    base_addr: 0xc000_8000,
};

type S<'a> = Session<'a, FakeDevice, FakeLink>;

fn session(buf: &mut [u8]) -> S<'_> {
    Session::new(INFO, buf, FakeDevice::default(), FakeLink::default())
}

fn hello(s: &mut S<'_>) {
    s.on_message(HostMsg::Hello { version: PROTOCOL_VERSION, host: "test" }, 0);
    assert_eq!(s.state(), State::Idle);
    s.link_mut().clear();
}

/// Upload in order; the `LoadAck`s it earns are checked and removed from the link's log.
fn upload(s: &mut S<'_>, img: &[u8], now: u64) {
    s.on_message(HostMsg::LoadBegin { len: img.len() as u32 }, now);
    for (i, c) in img.chunks(CHUNK).enumerate() {
        s.on_message(HostMsg::LoadChunk { offset: (i * CHUNK) as u32, data: c }, now);
    }
    s.on_message(HostMsg::LoadEnd, now);
    let acks: Vec<u32> = s
        .link()
        .msgs()
        .iter()
        .filter_map(|m| if let AgentMsg::LoadAck { next } = m { Some(*next) } else { None })
        .collect();
    if !acks.is_empty() {
        let want: Vec<u32> = std::iter::once(0)
            .chain(img.chunks(CHUNK).scan(0, |at, c| {
                *at += c.len() as u32;
                Some(*at)
            }))
            .collect();
        assert_eq!(acks, want);
    }
    s.link_mut().sent.retain(|p| !matches!(wire::decode::<AgentMsg<'_>>(p), Ok(AgentMsg::LoadAck { .. })));
}

/// Credit the host gives in these tests.
const WINDOW: u32 = 1 << 20;

/// Hello, load, start, first credit: a running session at t=0, link cleared.
fn running(buf: &mut [u8]) -> S<'_> {
    started(buf, HostMsg::Start, 0)
}

/// Hello and load at t=0, then `start` (`Start` or `StartPacked`) and the first credit at `now`;
/// link cleared.
fn started<'a>(buf: &'a mut [u8], start: HostMsg<'static>, now: u64) -> S<'a> {
    let mut s = session(buf);
    hello(&mut s);
    upload(&mut s, &image(&BUILD_ID), 0);
    s.on_message(start, now);
    assert_eq!(s.link().msgs(), [AgentMsg::Loaded { probes: 1 }, AgentMsg::Started]);
    s.on_message(HostMsg::Ack { next: 0, window: WINDOW }, now);
    s.link_mut().clear();
    s
}

/// A packed record stream, unpacked as the host does.
fn unpacked(packed: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    ktap_protocol::pack::Unpacker::new(u64::MAX)
        .feed(packed, true, |b| {
            got.extend_from_slice(b);
            Ok::<(), ()>(())
        })
        .unwrap();
    got
}

/// The record stream as the host reassembles it: every piece must continue where the stream ends
/// (no resends in these tests) and stay within `RECORD_BATCH`.
fn stream_bytes(link: &FakeLink) -> Vec<u8> {
    let mut out = Vec::new();
    for m in link.msgs() {
        if let AgentMsg::Records { offset, data } = m {
            assert_eq!(offset, out.len() as u64, "pieces in order, no gap, no repeat");
            assert!(!data.is_empty() && data.len() <= RECORD_BATCH, "piece of {} bytes", data.len());
            out.extend_from_slice(data);
        }
    }
    out
}

/// The stream split into records.
fn records_of(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let n = ktap_protocol::record::first_len(data).unwrap();
        out.push(data[..n].to_vec());
        data = &data[n..];
    }
    out
}

fn streamed(link: &FakeLink) -> Vec<Vec<u8>> {
    records_of(&stream_bytes(link))
}

/// Acknowledge every stream byte sent so far (the highest offset + length seen).
fn ack_all(s: &mut S<'_>, now: u64) {
    let next = s
        .link()
        .msgs()
        .iter()
        .filter_map(|m| {
            if let AgentMsg::Records { offset, data } = m { Some(offset + data.len() as u64) } else { None }
        })
        .max()
        .unwrap_or(0);
    s.on_message(HostMsg::Ack { next, window: WINDOW }, now);
}

/// Poll and acknowledge until `Stopped` comes (or `limit` rounds pass); returns its stats and end.
fn drain_until_stopped(s: &mut S<'_>, mut now: u64, limit: usize) -> (Stats, u64) {
    for _ in 0..limit {
        s.poll(now);
        if let Some(AgentMsg::Stopped { stats, end }) = s.link().msgs().last() {
            return (*stats, *end);
        }
        ack_all(s, now);
        now += 1;
    }
    panic!("no Stopped after {limit} polls");
}

fn error(code: u16, detail: i32) -> AgentMsg<'static> {
    AgentMsg::Error { code, detail }
}

#[test]
fn hello_is_answered_with_the_board() {
    let mut buf = [0u8; 64];
    let mut s = session(&mut buf);
    s.on_message(HostMsg::Hello { version: PROTOCOL_VERSION, host: "ktap-host 0.1" }, 5);
    assert_eq!(
        s.link().msgs(),
        [AgentMsg::Hello {
            version: PROTOCOL_VERSION,
            agent: AGENT_VERSION,
            machine: "armv7l",
            release: "6.1.0-50-armmp",
            build_id: &BUILD_ID,
            base_symbol: "_stext",
            base_addr: 0xc000_8000,
        }]
    );
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.counters().sessions, 1);
}

#[test]
fn another_version_gets_hello_then_mismatch_and_nothing_else() {
    let mut buf = [0u8; 1024];
    let mut s = session(&mut buf);
    s.on_message(HostMsg::Hello { version: PROTOCOL_VERSION + 1, host: "future" }, 0);
    let mismatch = error(codes::VERSION_MISMATCH, i32::from(PROTOCOL_VERSION));
    let msgs = s.link().msgs();
    assert!(matches!(msgs[0], AgentMsg::Hello { version: PROTOCOL_VERSION, .. }));
    assert_eq!(msgs[1..], *core::slice::from_ref(&mismatch));
    assert_eq!(s.state(), State::Mismatch);
    s.link_mut().clear();
    s.on_message(HostMsg::Ping { seq: 1 }, 0);
    upload(&mut s, &image(&BUILD_ID), 0);
    s.on_message(HostMsg::Start, 0);
    s.feed(&[0, 1, 2, 3, 0], 0); // a broken frame
    assert!(s.link().msgs().iter().all(|m| *m == mismatch));
    assert_eq!(s.link().msgs().len(), 6); // ping, begin, chunk, end, start, bad frame: one each
    assert!(s.device().log.is_empty());
    // a host of our version may still open a session
    hello(&mut s);
}

#[test]
fn a_future_hello_that_does_not_decode_is_still_answered() {
    let mut buf = [0u8; 64];
    let mut s = session(&mut buf);
    // variant 0, version 300 (varint ac 02), then a field layout this agent does not know
    let payload = [0x00, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert!(wire::decode::<HostMsg<'_>>(&payload).is_err());
    let mut f = [0u8; 64];
    let n = frame::encode(&payload, &mut f).unwrap();
    s.feed(&f[..n], 0);
    let msgs = s.link().msgs();
    assert!(matches!(msgs[0], AgentMsg::Hello { .. }));
    assert_eq!(msgs[1], error(codes::VERSION_MISMATCH, i32::from(PROTOCOL_VERSION)));
}

#[test]
fn without_a_session_only_hello_is_answered() {
    let mut buf = [0u8; 64];
    let mut s = session(&mut buf);
    s.on_message(HostMsg::Ping { seq: 1 }, 0);
    s.on_message(HostMsg::Start, 0);
    s.on_message(HostMsg::Bye, 0);
    s.feed(&[0, 9, 9, 9, 0], 0); // line noise before any host: counted, not answered
    assert_eq!(s.link().msgs(), [error(codes::NO_SESSION, 0), error(codes::NO_SESSION, 0)]);
    assert_eq!(s.counters().bad_frames, 1);
    assert!(s.device().log.is_empty());
}

#[test]
fn upload_and_load() {
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    hello(&mut s);
    let mut img = image(&BUILD_ID);
    img.resize(img.len(), 0);
    upload(&mut s, &img, 0);
    assert_eq!(s.link().msgs(), [AgentMsg::Loaded { probes: 1 }]);
    assert_eq!(s.device().image.as_deref(), Some(&img[..]));
    assert_eq!(s.state(), State::Loaded);
}

#[test]
fn multi_chunk_upload_reassembles() {
    // an image spanning several chunks (a big build-id section is not allowed, so pad the code)
    let mut b = ktap_protocol::image::build::ImageBuilder {
        code: vec![0; 3000],
        funcs: vec![ktap_protocol::image::FuncSpec { code_off: 0, code_len: 3000, ..Default::default() }],
        build_id: BUILD_ID.to_vec(),
        ..Default::default()
    };
    b.code[1234] = 7;
    let img = b.build();
    assert!(img.len() > 5 * CHUNK);
    let mut buf = vec![0u8; 8192];
    let mut s = session(&mut buf);
    hello(&mut s);
    upload(&mut s, &img, 0);
    assert_eq!(s.link().msgs(), [AgentMsg::Loaded { probes: 1 }]);
    assert_eq!(s.device().image.as_deref(), Some(&img[..]));
}

#[test]
fn build_id_must_match_the_kernel() {
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    hello(&mut s);
    for id in [&[0xb2; 20][..], &[][..], &BUILD_ID[..19]] {
        let img = image(id);
        let at = Image::parse(&img).unwrap().section_offset(SectionKind::BuildId) as u32;
        upload(&mut s, &img, 0);
        assert_eq!(
            s.link().msgs(),
            [AgentMsg::Rejected { code: codes::BUILD_ID_MISMATCH, offset: at, detail: 0 }],
            "build-id {id:?}"
        );
        s.link_mut().clear();
    }
    assert!(s.device().log.is_empty(), "nothing reached the kernel");
    assert_eq!(s.state(), State::Idle);
}

/// An image compiled from a System.map: a kprobe on `vfs_read` at `addr`, no build-id unless given.
fn map_image(addr: u64, build_id: &[u8]) -> Vec<u8> {
    use ktap_protocol::image::build::{ImageBuilder, OwnedProbe, OwnedSymbols};
    use ktap_protocol::image::{FuncSpec, ProbeKind};
    ImageBuilder {
        code: vec![0],
        funcs: vec![FuncSpec { code_off: 0, code_len: 1, n_int: 1, ..FuncSpec::default() }],
        probes: vec![OwnedProbe {
            kind: ProbeKind::Kprobe,
            func: 0,
            addr,
            flags: 0,
            name: b"vfs_read".to_vec(),
        }],
        build_id: build_id.to_vec(),
        symbols: Some(OwnedSymbols {
            base_name: b"_text".to_vec(),
            base_addr: 0xc000_8000,
            entries: vec![(addr, b"vfs_read".to_vec())],
        }),
        ..ImageBuilder::default()
    }
    .build()
}

#[test]
fn a_map_image_loads_only_when_kallsyms_agrees() {
    let kallsyms = b"c0008000 T _stext\nc0200000 T vfs_read\n".to_vec();
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    s.device_mut().kallsyms = Some(Ok(kallsyms));
    hello(&mut s);
    let good = map_image(0xc020_0000, &[]);
    upload(&mut s, &good, 0);
    assert_eq!(s.link().msgs(), [AgentMsg::Loaded { probes: 1 }]);
    assert_eq!(s.device().log, ["kallsyms", "load"]);
    s.link_mut().clear();
    s.device_mut().log.clear();

    // another kernel's map: refused at the symbol's entry, with the board's offset; nothing loaded
    // beyond what was there (the kernel still holds the first program)
    let bad = map_image(0xc020_0100, &[]);
    let entry = Image::parse(&bad).unwrap().symbols.unwrap().iter().next().unwrap().offset as u32;
    upload(&mut s, &bad, 0);
    assert_eq!(
        s.link().msgs(),
        [AgentMsg::Rejected { code: codes::SYMBOL_MISMATCH, offset: entry, detail: 0x1f_8000 }]
    );
    assert_eq!(s.device().log, ["kallsyms"]);
    s.link_mut().clear();
    s.device_mut().log.clear();

    // a build-id it also carries must be the kernel's
    let other = map_image(0xc020_0000, &[0xb2; 20]);
    let at = Image::parse(&other).unwrap().section_offset(SectionKind::BuildId) as u32;
    upload(&mut s, &other, 0);
    assert_eq!(
        s.link().msgs(),
        [AgentMsg::Rejected { code: codes::BUILD_ID_MISMATCH, offset: at, detail: 0 }]
    );
    assert!(s.device().log.is_empty());
    s.link_mut().clear();
    upload(&mut s, &map_image(0xc020_0000, &BUILD_ID), 0);
    assert_eq!(s.link().msgs(), [AgentMsg::Loaded { probes: 1 }]);
}

#[test]
fn a_map_image_is_refused_when_kallsyms_cannot_be_read() {
    for (file, detail) in [(Err(13), 13), (Ok(b"00000000 T vfs_read\n".to_vec()), 0)] {
        let mut buf = vec![0u8; 4096];
        let mut s = session(&mut buf);
        s.device_mut().kallsyms = Some(file);
        hello(&mut s);
        upload(&mut s, &map_image(0xc020_0000, &[]), 0);
        let msgs = s.link().msgs();
        let [AgentMsg::Rejected { code: codes::NO_KALLSYMS, detail: d, .. }] = msgs.as_slice() else {
            panic!("{msgs:?}")
        };
        assert_eq!(*d, detail);
        assert_eq!(s.device().log, ["kallsyms"], "nothing reached the kernel");
    }
}

#[test]
fn structurally_bad_images_are_refused_with_the_image_code() {
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    hello(&mut s);
    upload(&mut s, b"NOPE this is not an image", 0);
    let e = Image::parse(b"NOPE this is not an image").unwrap_err();
    assert_eq!(
        s.link().msgs(),
        [AgentMsg::Rejected { code: e.code(), offset: e.offset() as u32, detail: 0 }]
    );
    assert!(s.device().log.is_empty());
}

#[test]
fn upload_errors_are_answered_once() {
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    hello(&mut s);
    s.on_message(HostMsg::LoadBegin { len: 100 }, 0);
    s.on_message(HostMsg::LoadChunk { offset: 50, data: &[0; 50] }, 0);
    s.on_message(HostMsg::LoadChunk { offset: 0, data: &[0; 50] }, 0);
    s.on_message(HostMsg::LoadEnd, 0);
    assert_eq!(
        s.link().msgs(),
        [
            AgentMsg::LoadAck { next: 0 },
            AgentMsg::LoadAck { next: 0 }, // the chunk after a gap: resend from 0
            AgentMsg::LoadAck { next: 50 },
            AgentMsg::Rejected { code: codes::BAD_UPLOAD, offset: 50, detail: 100 }, // ended short
        ]
    );
    s.link_mut().clear();
    s.on_message(HostMsg::LoadBegin { len: 4097 }, 0);
    s.on_message(HostMsg::LoadChunk { offset: 0, data: &[0; 50] }, 0);
    s.on_message(HostMsg::LoadEnd, 0);
    assert_eq!(
        s.link().msgs(),
        [AgentMsg::Rejected { code: codes::IMAGE_TOO_LARGE, offset: 0, detail: 4096 }]
    );
    s.link_mut().clear();
    s.on_message(HostMsg::LoadEnd, 0);
    assert_eq!(s.link().msgs(), [AgentMsg::Rejected { code: codes::BAD_UPLOAD, offset: 0, detail: 0 }]);
    assert!(s.device().log.is_empty());
}

#[test]
fn missing_device_is_an_error_not_a_rejection() {
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    hello(&mut s);
    s.device_mut().load_result = Some(Err(LoadError::NoDevice { errno: 2 }));
    upload(&mut s, &image(&BUILD_ID), 0);
    assert_eq!(s.link().msgs(), [error(codes::NO_DEVICE, 2)]);
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn kernel_refusals_are_relayed() {
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    hello(&mut s);
    s.device_mut().load_result = Some(Err(LoadError::Refused { code: 0x205, offset: 40, detail: 0 }));
    upload(&mut s, &image(&BUILD_ID), 0);
    assert_eq!(s.link().msgs(), [AgentMsg::Rejected { code: 0x205, offset: 40, detail: 0 }]);
    assert_eq!(s.state(), State::Idle);
    // the device is released, so the module can be unloaded (found by tests/tests/verifier_stress.rs)
    assert_eq!(s.device_mut().calls("unload"), 1);
}

#[test]
fn start_and_stop_need_a_program() {
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    hello(&mut s);
    s.on_message(HostMsg::Start, 0);
    s.on_message(HostMsg::Stop, 0);
    assert_eq!(s.link().msgs(), [error(codes::NOT_LOADED, 0), error(codes::NOT_LOADED, 0)]);
    s.link_mut().clear();
    upload(&mut s, &image(&BUILD_ID), 0);
    s.device_mut().start_errno = Some(1);
    s.on_message(HostMsg::Start, 0);
    assert_eq!(s.link().msgs()[1], error(codes::KERNEL, -1));
    assert_eq!(s.state(), State::Loaded);
    // stopping a program that never started just reports its counters
    s.link_mut().clear();
    s.on_message(HostMsg::Stop, 0);
    assert_eq!(s.link().msgs(), [AgentMsg::Stopped { stats: Stats::default(), end: 0 }]);
}

#[test]
fn records_stream_in_whole_batches_and_stop_drains() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    let mut want = Vec::new();
    for i in 0..40u16 {
        let r = rec(20 + usize::from(i) * 7, i);
        want.push(r.clone());
        s.device_mut().ring.push_back(r);
    }
    for t in 10..20 {
        s.poll(t);
        ack_all(&mut s, t);
    }
    let tail: Vec<_> = (100..105).map(|i| rec(30, i)).collect();
    want.extend(tail.iter().cloned());
    s.device_mut().at_stop = tail;
    s.device_mut().kstats = KStats { hits: 45, ring_dropped: 3, ..KStats::default() };
    s.on_message(HostMsg::Stop, 30);
    assert_eq!(s.state(), State::Draining);
    let (stats, end) = drain_until_stopped(&mut s, 31, 100);
    assert_eq!(streamed(s.link()), want);
    assert_eq!(end, want.iter().map(Vec::len).sum::<usize>() as u64);
    assert_eq!(stats, Stats { hits: 45, ring_dropped: 3, ..Stats::default() });
    assert_eq!(s.state(), State::Loaded);
    assert!(!s.device().armed);
    // a stopped program can be replaced by a new upload
    s.link_mut().clear();
    upload(&mut s, &image(&BUILD_ID), 40);
    assert_eq!(s.link().msgs(), [AgentMsg::Loaded { probes: 1 }]);
    assert_eq!(s.device().calls("unload"), 1);
}

#[test]
fn stats_go_out_about_once_a_second() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    s.device_mut().kstats.hits = 7;
    let mut pings = 0;
    for t in (0..=3050).step_by(50) {
        if t % u64::from(HEARTBEAT_INTERVAL_MS) == 0 {
            s.on_message(HostMsg::Ping { seq: t as u32 }, t);
            pings += 1;
        }
        s.poll(t);
    }
    let stats: Vec<_> = s.link().msgs().into_iter().filter(|m| matches!(m, AgentMsg::Stats(_))).collect();
    assert_eq!(stats.len(), 3);
    assert_eq!(stats[0], AgentMsg::Stats(Stats { hits: 7, ..Stats::default() }));
    assert_eq!(s.state(), State::Running, "pings kept the session alive");
    assert_eq!(s.link().msgs().iter().filter(|m| matches!(m, AgentMsg::Pong { .. })).count(), pings);
}

#[test]
fn a_silent_host_is_disarmed() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    let timeout = u64::from(HEARTBEAT_TIMEOUT_MS);
    s.on_message(HostMsg::Ping { seq: 1 }, 1000);
    s.poll(1000 + timeout - 1);
    assert_eq!(s.state(), State::Running);
    s.feed(&[0, 1, 2, 3, 0], 1000 + timeout - 1); // garbage does not count as the host being alive
    s.poll(1000 + timeout);
    assert_eq!(s.state(), State::AwaitHello);
    assert_eq!(s.device().calls("stop"), 1);
    assert_eq!(s.device().calls("unload"), 1);
    assert!(s.device().image.is_none());
    assert_eq!(s.counters().heartbeat_timeouts, 1);
    // the reconnecting host finds a clean board and can load again
    s.link_mut().clear();
    s.on_message(HostMsg::Start, 3100);
    assert_eq!(s.link().msgs(), [error(codes::NO_SESSION, 0)]);
    hello(&mut s);
    upload(&mut s, &image(&BUILD_ID), 3200);
    assert_eq!(s.link().msgs(), [AgentMsg::Loaded { probes: 1 }]);
}

#[test]
fn no_heartbeat_needed_while_not_running() {
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    hello(&mut s);
    upload(&mut s, &image(&BUILD_ID), 0);
    s.poll(1_000_000);
    assert_eq!(s.state(), State::Loaded);
}

#[test]
fn a_new_hello_cleans_up_the_previous_session() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    s.device_mut().ring.push_back(rec(10, 1));
    s.on_message(HostMsg::Hello { version: PROTOCOL_VERSION, host: "again" }, 100);
    assert_eq!(s.device().log[s.device().log.len() - 2..], ["stop", "unload"]);
    assert!(matches!(s.link().msgs()[..], [AgentMsg::Hello { .. }]));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn bye_unloads_silently() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    s.on_message(HostMsg::Bye, 10);
    assert!(s.link().msgs().is_empty());
    assert_eq!(s.state(), State::AwaitHello);
    assert!(s.device().image.is_none() && !s.device().armed);
}

#[test]
fn load_while_running_is_busy() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    upload(&mut s, &image(&BUILD_ID), 10);
    assert_eq!(s.link().msgs(), [AgentMsg::Rejected { code: codes::BUSY, offset: 0, detail: 0 }]);
    assert_eq!(s.state(), State::Running);
}

#[test]
fn bad_frames_and_messages_are_counted_and_answered() {
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    hello(&mut s);
    let mut f = [0u8; 64];
    let n = frame::encode(&[0x09, 0x01], &mut f).unwrap(); // variant 9 does not exist
    s.feed(&f[..n], 0);
    f[3] ^= 0x10; // corrupt: CRC or COBS fails
    s.feed(&f[..n], 0);
    assert_eq!(
        s.link().msgs(),
        [error(codes::BAD_MESSAGE, DETAIL_UNDECODABLE), error(codes::BAD_MESSAGE, DETAIL_BAD_FRAME)]
    );
    assert_eq!(s.counters().bad_messages, 1);
    assert_eq!(s.counters().bad_frames, 1);
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn a_whole_session_through_frames_byte_by_byte() {
    let mut stream = Vec::new();
    let mut push = |m: &HostMsg<'_>| {
        let mut p = [0u8; frame::MAX_PAYLOAD];
        let p = wire::encode(m, &mut p).unwrap();
        let mut f = [0u8; frame::MAX_FRAME];
        let n = frame::encode(p, &mut f).unwrap();
        stream.extend_from_slice(&f[..n]);
    };
    let img = image(&BUILD_ID);
    push(&HostMsg::Hello { version: PROTOCOL_VERSION, host: "h" });
    push(&HostMsg::LoadBegin { len: img.len() as u32 });
    push(&HostMsg::LoadChunk { offset: 0, data: &img });
    push(&HostMsg::LoadEnd);
    push(&HostMsg::Start);
    push(&HostMsg::Ack { next: 0, window: 4096 });
    push(&HostMsg::Ping { seq: 42 });
    push(&HostMsg::Stop);
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    s.device_mut().at_stop = vec![rec(12, 5)];
    for b in &stream {
        s.feed(core::slice::from_ref(b), 0);
    }
    s.poll(0);
    let msgs = s.link().msgs();
    assert!(matches!(msgs[0], AgentMsg::Hello { .. }));
    assert_eq!(
        msgs[1..],
        [
            AgentMsg::LoadAck { next: 0 },
            AgentMsg::LoadAck { next: img.len() as u32 },
            AgentMsg::Loaded { probes: 1 },
            AgentMsg::Started,
            AgentMsg::Pong { seq: 42 },
            AgentMsg::Records { offset: 0, data: &rec(12, 5) },
            AgentMsg::Stopped { stats: Stats::default(), end: 12 },
        ]
    );
}

#[test]
fn reads_are_sized_to_the_stream_room_and_wait_for_acknowledgements() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    for i in 0..150 {
        s.device_mut().ring.push_back(rec(100, i));
    }
    for t in 0..5 {
        s.poll(t);
    }
    let offered = s.device().read_sizes.clone();
    assert!(offered.iter().all(|n| (MAX_RECORD..=READ_BUF).contains(n)), "{offered:?}");
    assert_eq!(stream_bytes(s.link()).len(), IN_FLIGHT, "no more than IN_FLIGHT unacknowledged bytes");
    // the stream is full: no more reads until the host acknowledges
    let reads = s.device().calls("read");
    s.poll(6);
    assert_eq!(s.device().calls("read"), reads);
    assert_eq!(s.link_dropped(), 0);
    for t in 7..40 {
        ack_all(&mut s, t);
        s.poll(t);
    }
    assert_eq!(streamed(s.link()), (0..150).map(|i| rec(100, i)).collect::<Vec<_>>());
}

#[test]
fn no_credit_no_records_and_a_stalled_stream_drops_and_counts() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    s.on_message(HostMsg::Ack { next: 0, window: 0 }, 0); // the host takes nothing now
    for i in 0..200 {
        s.device_mut().ring.push_back(rec(50, i));
    }
    assert!(s.wants_records(0), "an empty stream reads the ring");
    for t in (0..1000).step_by(100) {
        s.poll(t);
    }
    assert!(stream_bytes(s.link()).is_empty(), "nothing sent without credit");
    let held = s.device().ring.len();
    assert!(held > 0 && held < 200, "the stream took what fits ({held} left in the ring)");
    // a full stream waits for room without the ring waking the agent, until the stall ends that
    assert!(!s.wants_records(999), "a full stream still asks for the ring");
    assert!(s.wants_records(1000 + LINK_STALL_MS));
    s.on_message(HostMsg::Ping { seq: 0 }, 1000);
    s.poll(1000);
    assert!(s.link_dropped() > 0);
    let dropped = s.link_dropped();
    assert!(s.device().ring.is_empty(), "the kernel ring is not left full");
    // credit comes back: what the stream held is delivered, then Stopped counts the drops
    s.on_message(HostMsg::Ack { next: 0, window: WINDOW }, 1100);
    s.on_message(HostMsg::Stop, 1100);
    let (stats, end) = drain_until_stopped(&mut s, 1101, 100);
    assert_eq!(stats.link_dropped, dropped);
    let got = streamed(s.link());
    assert_eq!(got.len() as u64 + dropped, 200);
    assert_eq!(end, 50 * got.len() as u64);
}

#[test]
fn records_of_any_size_stream_and_malformed_reads_are_counted() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    s.device_mut().ring.push_back(rec(10, 1));
    // longer than a frame: the stream cuts it into pieces and the host joins them
    s.device_mut().ring.push_back(rec(MAX_RECORD, 3));
    s.poll(10);
    assert_eq!(streamed(s.link()), [rec(10, 1), rec(MAX_RECORD, 3)]);
    assert_eq!(s.link_dropped(), 0);
    s.device_mut().ring.push_back(rec(10, 4));
    s.device_mut().garbage = vec![40, 0, 1];
    ack_all(&mut s, 20);
    s.poll(20);
    assert_eq!(streamed(s.link()), [rec(10, 1), rec(MAX_RECORD, 3), rec(10, 4)]);
    assert_eq!(s.link_dropped(), 1);
    assert_eq!(s.counters().malformed_reads, 1);
}

#[test]
fn a_nak_resends_from_the_gap_in_smaller_pieces_and_they_grow_back() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    for i in 0..20 {
        s.device_mut().ring.push_back(rec(100, i));
    }
    s.poll(10);
    let first = stream_bytes(s.link());
    assert_eq!(first.len(), 2000);
    s.link_mut().clear();
    // the host got the first 300 bytes, then a piece was corrupted
    s.on_message(HostMsg::Nak { next: 300, window: WINDOW }, 20);
    let resent: Vec<(u64, usize)> = s
        .link()
        .msgs()
        .iter()
        .filter_map(|m| {
            if let AgentMsg::Records { offset, data } = m { Some((*offset, data.len())) } else { None }
        })
        .collect();
    assert_eq!(resent.first(), Some(&(300, RECORD_BATCH / 2)));
    assert!(resent.iter().all(|(_, n)| *n <= RECORD_BATCH / 2));
    assert_eq!(resent.iter().map(|(_, n)| n).sum::<usize>(), 1700);
    assert_eq!(s.counters().resends, 1);
    // acknowledgements let the pieces grow again
    s.link_mut().clear();
    s.on_message(HostMsg::Ack { next: 2000, window: WINDOW }, 30);
    for i in 20..40 {
        s.device_mut().ring.push_back(rec(100, i));
    }
    s.poll(40);
    let sizes: Vec<usize> = s
        .link()
        .msgs()
        .iter()
        .filter_map(|m| if let AgentMsg::Records { data, .. } = m { Some(data.len()) } else { None })
        .collect();
    assert_eq!(sizes[0], RECORD_BATCH);
}

#[test]
fn silence_resends_the_unacknowledged_tail() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    s.device_mut().ring.push_back(rec(40, 1));
    s.poll(10);
    assert_eq!(stream_bytes(s.link()).len(), 40);
    s.link_mut().clear();
    let rto = u64::from(wire::RESEND_TIMEOUT_MS);
    s.on_message(HostMsg::Ping { seq: 1 }, 10 + rto - 1);
    s.poll(10 + rto - 1);
    assert!(stream_bytes(s.link()).is_empty());
    s.on_message(HostMsg::Ping { seq: 2 }, 10 + rto);
    s.poll(10 + rto);
    assert_eq!(stream_bytes(s.link()), rec(40, 1), "the lost tail went out again");
    assert_eq!(s.counters().resends, 1);
    // once acknowledged, nothing more is resent
    s.link_mut().clear();
    s.on_message(HostMsg::Ack { next: 40, window: WINDOW }, 10 + rto);
    s.on_message(HostMsg::Ping { seq: 3 }, 10 + 3 * rto);
    s.poll(10 + 3 * rto);
    assert!(stream_bytes(s.link()).is_empty());
}

#[test]
fn repeated_requests_get_the_same_answers() {
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    hello(&mut s);
    let img = image(&BUILD_ID);
    s.on_message(HostMsg::LoadBegin { len: img.len() as u32 }, 0);
    s.on_message(HostMsg::LoadChunk { offset: 0, data: &img }, 0);
    s.on_message(HostMsg::LoadChunk { offset: 0, data: &img }, 0); // its LoadAck was lost
    s.on_message(HostMsg::LoadEnd, 0);
    s.on_message(HostMsg::LoadEnd, 0); // so was Loaded
    let n = img.len() as u32;
    assert_eq!(
        s.link().msgs(),
        [
            AgentMsg::LoadAck { next: 0 },
            AgentMsg::LoadAck { next: n },
            AgentMsg::LoadAck { next: n },
            AgentMsg::Loaded { probes: 1 },
            AgentMsg::Loaded { probes: 1 },
        ]
    );
    assert_eq!(s.device().calls("load"), 1, "loaded once");
    s.link_mut().clear();
    s.on_message(HostMsg::Start, 1);
    s.on_message(HostMsg::Start, 2);
    s.on_message(HostMsg::Ack { next: 0, window: WINDOW }, 2);
    s.on_message(HostMsg::Stop, 3);
    s.on_message(HostMsg::Stop, 4); // while draining: Stopped comes once the drain is done
    s.poll(5);
    s.on_message(HostMsg::Stop, 6); // Stopped was lost
    let stopped = AgentMsg::Stopped { stats: Stats::default(), end: 0 };
    assert_eq!(s.link().msgs(), [AgentMsg::Started, AgentMsg::Started, stopped.clone(), stopped]);
    assert_eq!(s.device().calls("start"), 1);
}

#[test]
fn draining_a_kernel_that_never_ends_is_bounded() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    s.device_mut().endless = true;
    s.on_message(HostMsg::Stop, 10);
    let mut now = 10;
    loop {
        now += 1;
        s.on_message(HostMsg::Ping { seq: 0 }, now);
        ack_all(&mut s, now);
        s.link_mut().sent.retain(|p| {
            !matches!(wire::decode::<AgentMsg<'_>>(p), Ok(AgentMsg::Records { .. } | AgentMsg::Pong { .. }))
        });
        s.poll(now);
        if s.state() == State::Loaded {
            break;
        }
        assert!(now < 10 + DRAIN_MAX_READS as u64, "the drain did not end");
    }
    assert_eq!(s.device().calls("read"), DRAIN_MAX_READS);
    assert!(matches!(s.link().msgs().last(), Some(AgentMsg::Stopped { .. })));
}

#[test]
fn shutdown_disarms() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    s.shutdown();
    assert!(!s.device().armed && s.device().image.is_none());
    assert_eq!(s.state(), State::AwaitHello);
}

#[test]
fn files_are_installed_and_the_module_replaced_outside_a_running_program() {
    use ktap_protocol::pack::{crc32, pack};
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    let data: Vec<u8> = (0..5000u32).flat_map(|i| (i % 300).to_le_bytes()).collect();
    let packed = pack(&data);
    let begin = HostMsg::FileBegin {
        path: "/lib/ktap/ktap.ko",
        len: data.len() as u32,
        packed: packed.len() as u32,
        crc: crc32(&data),
        mode: 0o644,
    };
    // no session, no install
    s.on_message(begin.clone(), 0);
    assert_eq!(s.link().msgs(), [error(codes::NO_SESSION, 0)]);
    hello(&mut s);
    s.on_message(begin.clone(), 0);
    s.on_message(HostMsg::FileChunk { offset: 0, data: &packed }, 0);
    s.on_message(HostMsg::FileEnd, 0);
    s.on_message(HostMsg::ModuleLoad { path: "/lib/ktap/ktap.ko" }, 0);
    assert_eq!(
        s.link().msgs(),
        [
            AgentMsg::FileAck { next: 0 },
            AgentMsg::FileAck { next: packed.len() as u32 },
            AgentMsg::FileDone { len: data.len() as u32, crc: crc32(&data) },
            AgentMsg::ModuleLoaded,
        ]
    );
    assert!(s.device().files["/lib/ktap/ktap.ko"].0 == data);
    assert_eq!(s.device().file_log.last().map(|l| l.as_str()), Some("module /lib/ktap/ktap.ko"));

    // a loaded program is unloaded first (the fake asserts it), then the kernel's refusal is reported
    upload(&mut s, &image(&BUILD_ID), 0);
    s.device_mut().module_errno = Some(17);
    s.link_mut().clear();
    s.on_message(HostMsg::ModuleLoad { path: "/lib/ktap/ktap.ko" }, 0);
    assert_eq!(s.link().msgs(), [error(codes::MODULE_LOAD, -17)]);
    assert_eq!(s.state(), State::Idle);

    // while a program runs, nothing on the board changes
    upload(&mut s, &image(&BUILD_ID), 0);
    s.on_message(HostMsg::Start, 0);
    s.link_mut().clear();
    s.on_message(begin, 0);
    s.on_message(HostMsg::ModuleLoad { path: "/x" }, 0);
    assert_eq!(s.link().msgs(), [error(codes::BUSY, 0), error(codes::BUSY, 0)]);
}

#[test]
fn a_new_session_discards_an_unfinished_file() {
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    hello(&mut s);
    s.on_message(HostMsg::FileBegin { path: "/tmp/a", len: 10, packed: 10, crc: 0, mode: 0o600 }, 0);
    hello(&mut s);
    assert_eq!(s.device().file_log, ["create /tmp/a.part", "discard /tmp/a.part"]);
    assert!(s.device().files.is_empty());
}

#[test]
fn a_packed_stream_unpacks_to_the_records_and_costs_far_fewer_bytes() {
    let mut buf = vec![0u8; 4096];
    let mut s = started(&mut buf, HostMsg::StartPacked, 0);
    // a trace's typical stream: the same few events again and again
    let mut want = Vec::new();
    for i in 0..400u16 {
        let r = rec(28, i % 3);
        want.extend_from_slice(&r);
        s.device_mut().ring.push_back(r);
    }
    s.device_mut().at_stop = vec![rec(40, 9)];
    want.extend_from_slice(&rec(40, 9));
    for t in 0..5 {
        s.poll(t);
        ack_all(&mut s, t);
    }
    s.on_message(HostMsg::Stop, 6);
    let (_, end) = drain_until_stopped(&mut s, 7, 100);
    let packed = stream_bytes(s.link());
    assert_eq!(end, packed.len() as u64, "offsets count packed bytes");
    assert!(packed.len() * 8 < want.len(), "{} packed bytes for {}", packed.len(), want.len());
    assert!(unpacked(&packed) == want, "the stream unpacks to every record in order");
    assert_eq!(s.link_dropped(), 0);
    // the next program starts a new stream (the host starts a new decoder)
    s.link_mut().clear();
    s.on_message(HostMsg::Start, 20);
    s.device_mut().ring.push_back(rec(12, 1));
    s.on_message(HostMsg::Ack { next: 0, window: WINDOW }, 20);
    s.poll(21);
    assert_eq!(stream_bytes(s.link()), rec(12, 1), "Start streams unpacked from offset 0");
}

/// A serial line at `bytes_per_ms` between the agent and a host that acknowledges each piece as it
/// arrives (as `RecordRx` does), with the agent's 8 KiB output queue in front of it; the line stops
/// for `stall` ms once at 3 s (the board or QEMU not scheduled). Runs until every record arrived or
/// `limit_ms` passed; returns (stream bytes the host received once, bytes it received again,
/// resends, when the last byte arrived).
fn over_a_line(bytes_per_ms: usize, records: u16, stall: u64, limit_ms: u64) -> (u64, u64, u64, u64) {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    for i in 0..records {
        s.device_mut().ring.push_back(rec(29, i));
    }
    s.link_mut().room = 8 * 1024;
    let (mut next, mut repeated) = (0u64, 0u64);
    // the frame on the wire and the bytes of it still to go
    let mut wire: Option<(Vec<u8>, usize)> = None;
    for now in 0..limit_ms {
        if now % u64::from(HEARTBEAT_INTERVAL_MS) == 0 {
            s.on_message(HostMsg::Ping { seq: now as u32 }, now);
        }
        s.poll(now);
        let mut budget = if (3000..3000 + stall).contains(&now) { 0 } else { bytes_per_ms };
        while budget > 0 {
            let (payload, left) = match wire.take() {
                Some(w) => w,
                None if !s.link().sent.is_empty() => {
                    let p = s.link_mut().sent.remove(0);
                    let n = crate::outq::frame_len(p.len());
                    (p, n)
                }
                None => break,
            };
            let n = left.min(budget);
            budget -= n;
            if n < left {
                wire = Some((payload, left - n));
                break;
            }
            // the whole frame is out: the queue has its room back and the host has the message
            s.link_mut().room += crate::outq::frame_len(payload.len());
            if let Ok(AgentMsg::Records { offset, data }) = wire::decode::<AgentMsg<'_>>(&payload) {
                let end = offset + data.len() as u64;
                if offset > next {
                    s.on_message(HostMsg::Nak { next, window: WINDOW }, now);
                } else if end <= next {
                    repeated += data.len() as u64;
                } else {
                    repeated += next - offset;
                    next = end;
                    s.on_message(HostMsg::Ack { next, window: WINDOW }, now);
                }
            }
        }
        // everything read from the kernel arrived (what the stream had no room for was dropped
        // and counted: a slow line backs up into the kernel, by design)
        if s.device().ring.is_empty() && next == s.core.stream.end() {
            return (next, repeated, s.counters().resends, now);
        }
    }
    (next, repeated, s.counters().resends, limit_ms)
}

#[test]
fn a_slow_line_carries_the_stream_once_even_after_a_stall() {
    // 2000 bytes/s: the 4 KiB in flight take 2 s to cross, four times the minimum resend timeout
    let (got, repeated, resends, at) = over_a_line(2, 3000, 700, 120_000);
    assert!(at < 120_000, "the stream did not complete within 120 s: {got} bytes");
    // a stall longer than the timeout may cost a resend of what was in flight, not a collapse
    assert!(resends <= 3, "{resends} resends");
    assert!(repeated * 10 <= got, "{repeated} of {got} bytes carried twice");
}

#[test]
fn a_fast_line_never_resends() {
    // 115200 baud: about 11.5 bytes/ms; nothing is lost, so nothing is ever resent
    let (got, repeated, resends, at) = over_a_line(11, 3000, 0, 60_000);
    assert_eq!((got, repeated, resends), (29 * 3000, 0, 0));
    assert!(at < 10_000, "took {at} ms");
}

#[test]
fn a_packed_trickle_gathers_in_the_ring_and_costs_few_flushes() {
    let mut buf = vec![0u8; 4096];
    let mut s = started(&mut buf, HostMsg::StartPacked, 1000);
    // the first event is read at once: nothing gathers before it
    s.device_mut().ring.push_back(rec(28, 0));
    assert!(s.wants_records(1000));
    s.poll(1000);
    assert!(s.device().ring.is_empty(), "the first record waited");
    // then one event per millisecond, the agent woken every millisecond: the ring is emptied once
    // per gathering time, not once per event
    let mut want = rec(28, 0);
    let mut emptied = 0;
    for t in 1001..2001u64 {
        let r = rec(28, (t % 3) as u16);
        want.extend_from_slice(&r);
        s.device_mut().ring.push_back(r);
        let gathering = s.wake_in(t);
        assert_eq!(s.wants_records(t), gathering.is_none(), "at {t}");
        s.poll(t);
        emptied += usize::from(s.device().ring.is_empty());
        if t % 10 == 0 {
            ack_all(&mut s, t);
        }
    }
    let most = 1 + 1000 / PACK_GATHER_MS as usize;
    assert!(
        emptied <= most,
        "the ring was read out {emptied} times for a 1000-event trickle (at most {most})"
    );
    s.on_message(HostMsg::Stop, 2001);
    drain_until_stopped(&mut s, 2002, 100);
    let packed = stream_bytes(s.link());
    // one flush per event was ~5 bytes each: well over 1000 bytes for these 1001 events
    assert!(packed.len() < 1001 * 2, "{} packed bytes for 1001 events", packed.len());
    assert!(unpacked(&packed) == want, "every record, in order");
    // a plain stream never waits
    assert_eq!(s.wake_in(3000), None);
}
