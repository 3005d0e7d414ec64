//! The built-in names of the language: values (`pid`, `execname`, ...) and functions (`printf`,
//! `count`, `kernel_string`, ...), in one place so "did you mean" and redeclaration checks agree.

use ktap_protocol::isa::CtxField;

/// Built-in values read without parentheses.
pub(super) const VALUE_NAMES: &[&str] = &[
    "pid",
    "tid",
    "uid",
    "cpu",
    "time",
    "retval",
    "arg0",
    "arg1",
    "arg2",
    "arg3",
    "arg4",
    "arg5",
    "arg6",
    "arg7",
    "arg8",
    "arg9",
    "arg",
    "execname",
    "probename",
    "num_cpus",
    "in_interrupt",
    "arch",
    "kernel_v",
];

/// Built-in functions.
pub(super) const FUNCTION_NAMES: &[&str] = &[
    "print",
    "printf",
    "print_hist",
    "delete",
    "exit",
    "len",
    "pairs",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "hist",
    "lhist",
    "stack",
    "kernel_string",
    "user_string",
    "gettimeofday_ns",
    "gettimeofday_us",
    "gettimeofday_ms",
    "gettimeofday_s",
    "table",
];

pub(super) fn is_value(name: &str) -> bool {
    VALUE_NAMES.contains(&name)
}

pub(super) fn is_function(name: &str) -> bool {
    FUNCTION_NAMES.contains(&name)
}

/// A built-in value read with `ctx`.
pub(super) fn ctx_field(name: &str) -> Option<CtxField> {
    match name {
        "num_cpus" => Some(CtxField::NumCpus),
        "in_interrupt" => Some(CtxField::InInterrupt),
        "wall_ns" => None,
        _ => CtxField::from_name(name),
    }
}
