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

fn upload(s: &mut S<'_>, img: &[u8], now: u64) {
    s.on_message(HostMsg::LoadBegin { len: img.len() as u32 }, now);
    for (i, c) in img.chunks(CHUNK).enumerate() {
        s.on_message(HostMsg::LoadChunk { offset: (i * CHUNK) as u32, data: c }, now);
    }
    s.on_message(HostMsg::LoadEnd, now);
}

/// Hello, load, start: a running session at t=0, link cleared.
fn running(buf: &mut [u8]) -> S<'_> {
    let mut s = session(buf);
    hello(&mut s);
    upload(&mut s, &image(&BUILD_ID), 0);
    s.on_message(HostMsg::Start, 0);
    assert_eq!(s.link().msgs(), [AgentMsg::Loaded { probes: 1 }, AgentMsg::Started]);
    s.link_mut().clear();
    s
}

/// Every record in every Records message, in order, checking no message exceeds the batch size
/// unless it is a single record.
fn streamed(link: &FakeLink) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for m in link.msgs() {
        if let AgentMsg::Records { data } = m {
            let recs: Vec<_> = ktap_protocol::record::records(data).map(|r| r.unwrap()).collect();
            assert!(data.len() <= RECORD_BATCH || recs.len() == 1, "batch of {} bytes", data.len());
            let mut pos = 0;
            while pos < data.len() {
                let n = ktap_protocol::record::first_len(&data[pos..]).unwrap();
                out.push(data[pos..pos + n].to_vec());
                pos += n;
            }
        }
    }
    out
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
    assert_eq!(s.link().msgs(), [AgentMsg::Rejected { code: codes::BAD_UPLOAD, offset: 0, detail: 50 }]);
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
    assert_eq!(s.link().msgs(), [AgentMsg::Stopped(Stats::default())]);
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
    s.poll(10);
    s.poll(20);
    let tail: Vec<_> = (100..105).map(|i| rec(30, i)).collect();
    want.extend(tail.iter().cloned());
    s.device_mut().at_stop = tail;
    s.device_mut().kstats = KStats { hits: 45, ring_dropped: 3, ..KStats::default() };
    s.on_message(HostMsg::Stop, 30);
    assert_eq!(streamed(s.link()), want);
    assert_eq!(
        s.link().msgs().last(),
        Some(&AgentMsg::Stopped(Stats { hits: 45, ring_dropped: 3, ..Stats::default() }))
    );
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
    push(&HostMsg::Ping { seq: 42 });
    push(&HostMsg::Stop);
    let mut buf = vec![0u8; 4096];
    let mut s = session(&mut buf);
    s.device_mut().at_stop = vec![rec(12, 5)];
    for b in &stream {
        s.feed(core::slice::from_ref(b), 0);
    }
    let msgs = s.link().msgs();
    assert!(matches!(msgs[0], AgentMsg::Hello { .. }));
    assert_eq!(
        msgs[1..],
        [
            AgentMsg::Loaded { probes: 1 },
            AgentMsg::Started,
            AgentMsg::Pong { seq: 42 },
            AgentMsg::Records { data: &rec(12, 5) },
            AgentMsg::Stopped(Stats::default()),
        ]
    );
}

#[test]
fn reads_are_sized_to_the_link_room() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    for i in 0..100 {
        s.device_mut().ring.push_back(rec(100, i));
    }
    s.link_mut().room = 2000;
    s.poll(10);
    let offered = s.device().read_sizes.clone();
    assert!(offered.iter().all(|n| (MAX_RECORD..=2000).contains(n)), "{offered:?}");
    assert_eq!(s.link_dropped(), 0);
    // the link filled up: no more reads until it drains or stalls
    let reads = s.device().calls("read");
    s.poll(20);
    assert_eq!(s.device().calls("read"), reads);
    let got = streamed(s.link());
    assert!(!got.is_empty());
    assert_eq!(got, (0..got.len() as u16).map(|i| rec(100, i)).collect::<Vec<_>>());
}

#[test]
fn a_stalled_link_drops_and_counts_instead_of_blocking_the_ring() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    s.link_mut().room = 0;
    for i in 0..10 {
        s.device_mut().ring.push_back(rec(50, i));
    }
    for t in (0..1000).step_by(100) {
        s.poll(t);
    }
    assert_eq!(s.device().calls("read"), 0, "the ring holds records while the link may catch up");
    s.on_message(HostMsg::Ping { seq: 0 }, 1000);
    s.poll(1000);
    assert_eq!(s.link_dropped(), 10);
    assert!(s.device().ring.is_empty());
    s.on_message(HostMsg::Stop, 1100);
    assert_eq!(
        s.link().msgs().last(),
        Some(&AgentMsg::Stopped(Stats { link_dropped: 10, ..Stats::default() }))
    );
}

#[test]
fn records_too_big_for_a_frame_and_malformed_reads_are_counted() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    s.device_mut().ring.push_back(rec(10, 1));
    // the kernel never writes a record this long, but a corrupt read must not stall the agent
    s.device_mut().ring.push_back(rec(crate::batch::MAX_RECORDS_DATA + 1, 2));
    s.device_mut().ring.push_back(rec(MAX_RECORD, 3)); // bigger than a batch, fits a frame: sent alone
    s.poll(10);
    assert_eq!(streamed(s.link()), [rec(10, 1), rec(MAX_RECORD, 3)]);
    assert_eq!(s.link_dropped(), 1);
    s.device_mut().ring.push_back(rec(10, 4));
    s.device_mut().garbage = vec![40, 0, 1];
    s.poll(20);
    assert_eq!(s.link_dropped(), 2);
    assert_eq!(s.counters().malformed_reads, 1);
}

#[test]
fn draining_a_kernel_that_never_ends_is_bounded() {
    let mut buf = vec![0u8; 4096];
    let mut s = running(&mut buf);
    s.device_mut().endless = true;
    s.on_message(HostMsg::Stop, 10);
    assert_eq!(s.device().calls("read"), DRAIN_MAX_READS);
    assert!(matches!(s.link().msgs().last(), Some(AgentMsg::Stopped(_))));
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
fn record_budget_is_conservative() {
    assert_eq!(record_budget(0), 0);
    for room in [0usize, 100, 1024, 2000, 4096, 8192, 65536] {
        let b = record_budget(room);
        if b == 0 {
            continue;
        }
        // worst case: batches of just over half a batch each
        let batches = 2 * b / RECORD_BATCH + 1;
        assert!(b + batches * (frame_len(3) + 3) <= room.max(b), "room {room}");
    }
}
