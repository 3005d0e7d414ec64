//! The peer in a scripting language: Lua 5.4 (`mlua`, vendored), one Lua function per handler.
//! Context values and records go through Rust functions, as an embedded Lua handler would reach them;
//! state lives in upvalues (locals of the chunk), Lua's fastest variables.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use mlua::{Function, Lua, Table};

use crate::{Engine, Hit, Outcome, Ring, Workload};

/// The chunk for `w`: returns the handler and a function returning the state to compare.
fn source(w: Workload) -> &'static str {
    match w {
        Workload::Count => {
            "local hits = 0
            return function() hits = hits + 1 end, function() return hits end"
        }
        Workload::ExecnameCount => {
            "local t = {}
            return function()
                local k = execname()
                t[k] = (t[k] or 0) + 1
            end, function() return t end"
        }
        Workload::Log2Hist => {
            "local count, sum, min, max, b = 0, 0, 0, 0, {}
            for i = 0, 63 do b[i] = 0 end
            return function()
                local v = arg(2)
                if count == 0 then min = v; max = v end
                count = count + 1
                sum = sum + v
                if v < min then min = v end
                if v > max then max = v end
                local k = 0
                if v > 0 then
                    k = 1
                    if v >= 0x100000000 then v = v >> 32; k = k + 32 end
                    if v >= 0x10000 then v = v >> 16; k = k + 16 end
                    if v >= 0x100 then v = v >> 8; k = k + 8 end
                    if v >= 16 then v = v >> 4; k = k + 4 end
                    if v >= 4 then v = v >> 2; k = k + 2 end
                    if v >= 2 then k = k + 1 end
                end
                b[k] = b[k] + 1
            end, function() return {count, sum, min, max, b} end"
        }
        Workload::Loop10 => {
            "local g = 0
            return function()
                local s = 0
                for i = 0, 9 do s = s + i end
                g = s
            end, function() return g end"
        }
        Workload::Printf3 => {
            "return function() emit(0, execname(), pid(), arg(2)) end, function() return 0 end"
        }
    }
}

/// Lua loaded with one workload.
pub struct LuaEngine {
    w: Workload,
    lua: Lua,
    handler: Function,
    state: Function,
    hit: Rc<Cell<*const Hit>>,
    ring: Rc<RefCell<Ring>>,
}

/// Load `w`.
pub fn load(w: Workload) -> Box<dyn Engine> {
    Box::new(LuaEngine::new(w))
}

impl LuaEngine {
    /// Load `w`.
    pub fn new(w: Workload) -> LuaEngine {
        let lua = Lua::new();
        let hit: Rc<Cell<*const Hit>> = Rc::new(Cell::new(std::ptr::null()));
        let ring = Rc::new(RefCell::new(Ring::default()));
        // SAFETY (all three): `run` sets the pointer to a hit that outlives the call into Lua
        let h = Rc::clone(&hit);
        let execname =
            lua.create_function(move |lua, ()| lua.create_string(unsafe { &(*h.get()).comm })).unwrap();
        let h = Rc::clone(&hit);
        let pid = lua.create_function(move |_, ()| Ok(unsafe { (*h.get()).pid })).unwrap();
        let h = Rc::clone(&hit);
        let arg = lua
            .create_function(move |_, n: usize| Ok(unsafe { (*h.get()).args.get(n).copied().unwrap_or(0) }))
            .unwrap();
        let r = Rc::clone(&ring);
        // the same struct the eBPF program writes: id, pid, arg, comm[16]
        let emit = lua
            .create_function(move |_, (id, name, pid, a): (i64, mlua::String, i64, i64)| {
                let mut rec = [0u8; 40];
                rec[..8].copy_from_slice(&id.to_le_bytes());
                rec[8..16].copy_from_slice(&pid.to_le_bytes());
                rec[16..24].copy_from_slice(&a.to_le_bytes());
                let name = name.as_bytes();
                let n = name.len().min(15);
                rec[24..24 + n].copy_from_slice(&name[..n]);
                Ok(r.borrow_mut().push(&rec))
            })
            .unwrap();
        let g = lua.globals();
        for (name, f) in [("execname", execname), ("pid", pid), ("arg", arg), ("emit", emit)] {
            g.set(name, f).unwrap();
        }
        let (handler, state) = lua.load(source(w)).eval::<(Function, Function)>().unwrap();
        LuaEngine { w, lua, handler, state, hit, ring }
    }

    /// One hit (what the benchmark times).
    #[inline]
    pub fn run(&mut self, hit: &Hit) {
        self.hit.set(hit);
        let r = self.handler.call::<()>(());
        debug_assert!(r.is_ok(), "{r:?}");
    }
}

impl Engine for LuaEngine {
    fn hit(&mut self, h: &Hit) {
        self.run(h);
    }

    fn outcome(&mut self) -> Outcome {
        let _ = &self.lua;
        match self.w {
            Workload::Count | Workload::Loop10 => Outcome::Value(self.state.call(()).unwrap()),
            Workload::ExecnameCount => {
                let t: Table = self.state.call(()).unwrap();
                Outcome::PerName(
                    t.pairs::<mlua::String, i64>()
                        .map(|p| p.unwrap())
                        .map(|(k, v)| (k.as_bytes().to_vec(), v))
                        .collect(),
                )
            }
            Workload::Log2Hist => {
                let (count, sum, min, max, b): (i64, i64, i64, i64, Table) = {
                    let t: Table = self.state.call(()).unwrap();
                    (
                        t.get(1).unwrap(),
                        t.get(2).unwrap(),
                        t.get(3).unwrap(),
                        t.get(4).unwrap(),
                        t.get(5).unwrap(),
                    )
                };
                let buckets: BTreeMap<usize, i64> =
                    (0..64).map(|i| (i, b.get::<i64>(i).unwrap())).filter(|(_, n)| *n != 0).collect();
                Outcome::Hist { count, sum, min, max, buckets }
            }
            Workload::Printf3 => {
                let ring = self.ring.borrow();
                let r = ring.last();
                let word = |i: usize| i64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
                let name = r[24..40].iter().copied().take_while(|b| *b != 0).collect();
                Outcome::Records { n: ring.records, last: (name, word(1), word(2)) }
            }
        }
    }
}
