//! Rendering records built with the protocol's own `RecordWriter`.

use ktap_protocol::record::{RecordKind, RecordWriter};

use super::*;
use crate::sidecar::{Span, TableInfo};

enum V<'a> {
    I(i64),
    S(&'a [u8]),
    B(&'a [u64]),
}

fn rec(kind: RecordKind, id: u16, vals: &[V<'_>]) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    let mut w = RecordWriter::new(&mut buf, kind, id);
    for v in vals {
        match v {
            V::I(i) => w.int(*i),
            V::S(s) => w.str(s),
            V::B(b) => w.buckets(b),
        }
    }
    w.finish().unwrap().to_vec()
}

fn sidecar() -> Sidecar {
    let span = Span { start: 0, end: 0 };
    Sidecar {
        source_file: "t.kp".into(),
        formats: vec![
            "%-8s pid %-5d opens a file\n".into(),
            "\n%d opens; vfs_read calls by process:\n".into(),
        ],
        tables: vec![TableInfo { name: "reads".into(), span }, TableInfo { name: "by_pid".into(), span }],
        ..Sidecar::default()
    }
}

#[test]
fn printf_records() {
    let sc = sidecar();
    let data =
        [rec(RecordKind::Printf, 0, &[V::S(b"cat"), V::I(42)]), rec(RecordKind::Printf, 1, &[V::I(3)])]
            .concat();
    let (text, problems) = render(&sc, &data);
    assert_eq!(text, "cat      pid 42    opens a file\n\n3 opens; vfs_read calls by process:\n");
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn tables_sorted_by_value_then_key_and_split_across_batches() {
    let sc = sidecar();
    let mut r = Renderer::new(&sc);
    let first = [
        rec(RecordKind::TableEntry, 0, &[V::S(b"sh"), V::I(5)]),
        rec(RecordKind::TableEntry, 0, &[V::S(b"dd"), V::I(1000)]),
    ]
    .concat();
    assert_eq!(r.feed(&first), "", "nothing before the table ends");
    let second = [
        rec(RecordKind::TableEntry, 0, &[V::S(b"cat"), V::I(5)]),
        rec(RecordKind::TableEnd, 0, &[V::I(3), V::I(0)]),
    ]
    .concat();
    let text = r.feed(&second);
    let want = format!("{:<32} {:>12}\n{:<32} {:>12}\n{:<32} {:>12}\n", "dd", 1000, "cat", 5, "sh", 5);
    assert_eq!(text, want);
    assert!(r.take_problems().is_empty());
}

#[test]
fn integer_keys_and_refused_inserts_are_reported() {
    let sc = sidecar();
    let data = [
        rec(RecordKind::TableEntry, 1, &[V::I(100), V::I(2)]),
        rec(RecordKind::TableEntry, 1, &[V::I(7), V::I(9)]),
        rec(RecordKind::TableEnd, 1, &[V::I(3), V::I(12)]),
    ]
    .concat();
    let (text, problems) = render(&sc, &data);
    assert_eq!(text, format!("{:<32} {:>12}\n{:<32} {:>12}\n", 7, 9, 100, 2));
    assert_eq!(
        problems,
        [
            "table `by_pid`: 1 of its 3 entries did not arrive",
            "table `by_pid`: 12 inserts refused (table full)"
        ]
    );
}

#[test]
fn problems_never_abort_rendering() {
    let sc = sidecar();
    let mut data = [
        rec(RecordKind::Printf, 9, &[V::I(1)]),
        rec(RecordKind::Printf, 1, &[]),
        rec(RecordKind::Printf, 1, &[V::S(b"x")]),
        rec(RecordKind::TableEntry, 0, &[V::S(b"open"), V::I(1)]),
    ]
    .concat();
    data.extend([3, 0, 1]); // a truncated record at the end
    let (text, problems) = render(&sc, &data);
    assert_eq!(
        text,
        "\n<missing> opens; vfs_read calls by process:\n\nx opens; vfs_read calls by process:\n".to_owned()
            + &format!("{:<32} {:>12}\n", "open", 1)
    );
    let all = problems.join("\n");
    assert!(all.contains("unknown format id 9"), "{all}");
    assert!(all.contains("fewer arguments than conversions"), "{all}");
    assert!(all.contains("`%d` got a string"), "{all}");
    assert!(all.contains("malformed records"), "{all}");
    assert!(all.contains("table `reads` ended without its end record"), "{all}");
}

#[test]
fn an_invalid_format_is_printed_as_is() {
    let sc = Sidecar { formats: vec!["%ld\n".into()], ..Sidecar::default() };
    let (text, problems) = render(&sc, &rec(RecordKind::Printf, 0, &[V::I(1)]));
    assert_eq!(text, "%ld\n");
    assert!(problems[0].contains("length modifier"), "{problems:?}");
}

#[test]
fn kernel_strings_are_bytes() {
    let sc = Sidecar { formats: vec!["[%s]\n".into()], ..Sidecar::default() };
    let (text, _) = render(&sc, &rec(RecordKind::Printf, 0, &[V::S(b"k\xc3worker")]));
    assert_eq!(text, "[k\u{fffd}worker]\n");
}

#[test]
fn aggregates_show_stats_a_chosen_stat_or_a_histogram() {
    use crate::sidecar::{Show, TableView};
    let mut sc = sidecar();
    let mut buckets = [0u64; 64];
    buckets[4] = 2;
    buckets[6] = 5;
    let entry = |id| {
        rec(RecordKind::TableEntry, id, &[V::S(b"dd"), V::I(7), V::I(300), V::I(8), V::I(40), V::B(&buckets)])
    };
    let end = |id| rec(RecordKind::TableEnd, id, &[V::I(1), V::I(0)]);
    let data = [entry(0), end(0)].concat();
    let (text, problems) = render(&sc, &data);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(text.starts_with("dd\n"), "{text}");
    assert!(text.contains("bucket 4 |"), "{text}");
    sc.views = vec![TableView { table: 0, show: Show::Hist }, TableView { table: 1, show: Show::Avg }];
    let (text, _) = render(&sc, &data);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "dd");
    assert!(lines[2].trim_start().starts_with("8 |@@@@@@@@@@@@@@@@@@@@ "), "{text}");
    assert!(lines[3].trim_start().starts_with("16 | "), "{text}");
    assert!(lines[4].ends_with("@ 5"), "{text}");
    let (text, _) = render(&sc, &[entry(1), end(1)].concat());
    assert_eq!(text, format!("{:<32} {:>12}\n", "dd", 42));
}

#[test]
fn stacks_are_symbolized_in_printf_and_table_keys() {
    use crate::sidecar::Slot;
    let mut sc = sidecar();
    sc.formats.push("%s\n".into());
    sc.stacks = vec![Slot::FormatArg { format: 2, arg: 0 }, Slot::TableKey { table: 1, key: 0 }];
    let raw: Vec<u8> = [0xc000_1010u64, 0xc000_2004].iter().flat_map(|a| a.to_le_bytes()).collect();
    let data = [
        rec(RecordKind::Printf, 2, &[V::S(&raw)]),
        rec(RecordKind::TableEntry, 1, &[V::S(&raw), V::I(3)]),
        rec(RecordKind::TableEnd, 1, &[V::I(1), V::I(0)]),
    ]
    .concat();
    let mut r = Renderer::new(&sc)
        .with_symbolizer(Box::new(|a| (a < 0xc000_2000).then(|| format!("vfs_read+{:#x}", a - 0xc000_1000))));
    let text = r.feed(&data);
    assert_eq!(
        text,
        format!("    vfs_read+0x10\n    0xc0002004\n    vfs_read+0x10\n    0xc0002004\n{:>45}\n", 3)
    );
}

#[test]
fn print_hist_bars_and_multi_keys() {
    use crate::sidecar::{Show, TableView};
    let mut sc = sidecar();
    let data = [
        rec(RecordKind::TableEntry, 0, &[V::S(b"sh"), V::I(1), V::I(4)]),
        rec(RecordKind::TableEntry, 0, &[V::S(b"dd"), V::I(2), V::I(8)]),
        rec(RecordKind::TableEnd, 0, &[V::I(2), V::I(0)]),
    ]
    .concat();
    let (text, _) = render(&sc, &data);
    assert_eq!(text, format!("{:<32} {:>12}\n{:<32} {:>12}\n", "dd, 2", 8, "sh, 1", 4));
    sc.views = vec![TableView { table: 0, show: Show::Bars }];
    let (text, _) = render(&sc, &data);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].trim_start().starts_with("dd, 2 |") && lines[1].ends_with(" 8"), "{text}");
    assert_eq!(lines[2].matches('@').count(), 25, "{text}");
}

#[test]
fn a_budget_exhaustion_names_the_probe() {
    let mut sc = sidecar();
    let span = Span { start: 0, end: 0 };
    sc.funcs = vec![crate::sidecar::FuncInfo { name: "kprobe:vfs_read".into(), span }];
    let data = [rec(RecordKind::BudgetExhausted, 0, &[]), rec(RecordKind::BudgetExhausted, 9, &[])].concat();
    let (text, problems) = render(&sc, &data);
    assert_eq!(text, "");
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("kprobe:vfs_read: a hit ran out of instruction budget"), "{problems:?}");
    assert!(problems[1].starts_with("function #9: a hit ran out"), "{problems:?}");
}

/// `enum pid_type` as a 4-byte enum: a value may arrive zero- or sign-extended.
fn pid_type() -> crate::sidecar::Names {
    let values = ["PIDTYPE_PID", "PIDTYPE_TGID", "PIDTYPE_PGID"].iter().enumerate();
    let mut v: Vec<(i64, String)> = values.map(|(i, n)| (i as i64, (*n).to_owned())).collect();
    v.push((-1, "PIDTYPE_NONE".into()));
    crate::sidecar::Names::new("enum pid_type".into(), 4, v, None)
}

#[test]
fn named_integers_print_as_names_with_s_and_as_numbers_with_d() {
    use crate::sidecar::{Named, Slot};
    let mut sc = sidecar();
    sc.formats.push("%s %d %-14s|\n".into());
    sc.names = vec![pid_type()];
    let slot = |arg| Named { slot: Slot::FormatArg { format: 2, arg }, names: 0 };
    sc.named = vec![slot(0), slot(2)];
    let data = [
        rec(RecordKind::Printf, 2, &[V::I(1), V::I(1), V::I(2)]),
        // not an enumerator: the number; 0xffffffff is -1 as a 4-byte enum
        rec(RecordKind::Printf, 2, &[V::I(7), V::I(7), V::I(0xffff_ffff)]),
    ]
    .concat();
    let (text, problems) = render(&sc, &data);
    assert_eq!(text, "PIDTYPE_TGID 1 PIDTYPE_PGID  |\n7 7 PIDTYPE_NONE  |\n");
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn named_table_keys_print_and_sort_by_name_and_unnamed_ones_keep_their_number() {
    use crate::sidecar::{Named, Names, Slot};
    let mut sc = sidecar();
    let calls = vec![(3, "syscalls:sys_enter_read".into()), (4, "syscalls:sys_enter_write".into())];
    sc.names =
        vec![pid_type(), Names::new("system calls".into(), 0, calls, Some("raw_syscalls:sys_enter".into()))];
    sc.named = vec![
        Named { slot: Slot::TableKey { table: 0, key: 1 }, names: 0 },
        Named { slot: Slot::TableKey { table: 1, key: 0 }, names: 1 },
    ];
    let data = [
        rec(RecordKind::TableEntry, 0, &[V::S(b"sh"), V::I(2), V::I(5)]),
        rec(RecordKind::TableEntry, 0, &[V::S(b"sh"), V::I(0), V::I(5)]),
        rec(RecordKind::TableEntry, 0, &[V::S(b"sh"), V::I(9), V::I(1)]),
        rec(RecordKind::TableEnd, 0, &[V::I(3), V::I(0)]),
        rec(RecordKind::TableEntry, 1, &[V::I(4), V::I(2)]),
        rec(RecordKind::TableEntry, 1, &[V::I(983045), V::I(2)]),
        rec(RecordKind::TableEnd, 1, &[V::I(2), V::I(0)]),
    ]
    .concat();
    let (text, problems) = render(&sc, &data);
    let want = [
        ("sh, PIDTYPE_PGID", 5),
        ("sh, PIDTYPE_PID", 5),
        ("sh, 9", 1),
        ("raw_syscalls:sys_enter(983045)", 2),
        ("syscalls:sys_enter_write", 2),
    ];
    let want: String = want.iter().map(|(k, v)| format!("{k:<32} {v:>12}\n")).collect();
    assert_eq!(text, want);
    assert!(problems.is_empty(), "{problems:?}");
}
