//! A frame payload -> `HostMsg` (what the agent decodes) and `AgentMsg` (what the host decodes): no
//! panic, and whatever decodes re-encodes to bytes that decode to the same message.
#![no_main]

use ktap_protocol::frame::MAX_PAYLOAD;
use ktap_protocol::wire::{self, AgentMsg, HostMsg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = [0u8; 2 * MAX_PAYLOAD];
    if let Ok(m) = wire::decode::<HostMsg<'_>>(data) {
        let b = wire::encode(&m, &mut buf).expect("a decoded message re-encodes");
        assert_eq!(wire::decode::<HostMsg<'_>>(b).ok(), Some(m));
    }
    if let Ok(m) = wire::decode::<AgentMsg<'_>>(data) {
        let b = wire::encode(&m, &mut buf).expect("a decoded message re-encodes");
        assert_eq!(wire::decode::<AgentMsg<'_>>(b).ok(), Some(m));
    }
});
