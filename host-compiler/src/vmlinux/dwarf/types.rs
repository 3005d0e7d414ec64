//! Type queries: what a type is, its size and C spelling, struct members and enum value names.

use gimli::constants::*;

use super::{Debug, Die, R, VOID};
use crate::ktypes::{Member, Shape, TypeRef};
use crate::vmlinux::names::{closest, did_you_mean};

/// Typedef chains deeper than this are a cycle in malformed DWARF.
const MAX_PEEL: usize = 64;

impl<'a> Debug<'a> {
    /// Follow typedefs and cv-qualifiers, and a struct/union/enum declaration to its definition.
    pub fn peel(&self, ty: TypeRef) -> Result<TypeRef, String> {
        let mut ty = ty;
        for _ in 0..MAX_PEEL {
            if ty == VOID {
                return Ok(ty);
            }
            let (unit, die) = self.die(ty.0)?;
            match die.tag() {
                DW_TAG_typedef | DW_TAG_const_type | DW_TAG_volatile_type | DW_TAG_restrict_type
                | DW_TAG_atomic_type => ty = Debug::type_of(&unit, &die),
                DW_TAG_structure_type | DW_TAG_union_type | DW_TAG_enumeration_type
                    if die.attr_value(DW_AT_declaration).is_some() =>
                {
                    let Some(name) = self.name(&unit, &die) else { return Ok(ty) };
                    let key = format!("{} {name}", tag_keyword(die.tag()));
                    return Ok(self.index.type_get(&key)?.map_or(ty, TypeRef));
                }
                _ => return Ok(ty),
            }
        }
        Err(format!("type at DWARF offset {:#x} is a typedef cycle", ty.0))
    }

    /// What `ty` is, typedefs and qualifiers peeled.
    pub fn shape(&self, ty: TypeRef) -> Result<Shape, String> {
        let ty = self.peel(ty)?;
        if ty == VOID {
            return Ok(Shape::Void);
        }
        let (unit, die) = self.die(ty.0)?;
        let size = Debug::udata(&die, DW_AT_byte_size);
        let name = || self.name(&unit, &die).unwrap_or_default();
        Ok(match die.tag() {
            DW_TAG_base_type => {
                let enc = match die.attr_value(DW_AT_encoding) {
                    Some(gimli::AttributeValue::Encoding(e)) => e,
                    Some(v) => DwAte(v.udata_value().unwrap_or(0) as u8),
                    None => DwAte(0),
                };
                let size = size.unwrap_or(0);
                match enc {
                    DW_ATE_boolean => Shape::Bool,
                    DW_ATE_signed | DW_ATE_signed_char => Shape::Int { size: size as u8, signed: true },
                    DW_ATE_unsigned | DW_ATE_unsigned_char | DW_ATE_UTF => {
                        Shape::Int { size: size as u8, signed: false }
                    }
                    _ => Shape::Other(name()),
                }
            }
            DW_TAG_enumeration_type => Shape::Enum { name: name(), size: size.unwrap_or(4) as u8 },
            DW_TAG_pointer_type | DW_TAG_reference_type => Shape::Ptr { to: Debug::type_of(&unit, &die) },
            DW_TAG_structure_type => Shape::Struct { name: name(), size: size.unwrap_or(0) },
            DW_TAG_union_type => Shape::Union { name: name(), size: size.unwrap_or(0) },
            DW_TAG_subroutine_type => Shape::Func,
            DW_TAG_array_type => {
                let elem = Debug::type_of(&unit, &die);
                let elem_size = self.size_of(elem)?.unwrap_or(0);
                Shape::Array { elem, len: self.array_len(ty)?, elem_size }
            }
            t => Shape::Other(t.static_string().unwrap_or("unknown DWARF tag").to_owned()),
        })
    }

    /// Number of elements of an array type (all dimensions multiplied); `None` if unbounded.
    fn array_len(&self, ty: TypeRef) -> Result<Option<u64>, String> {
        let (_, kids) = self.children(ty.0)?;
        let mut total: Option<u64> = Some(1);
        for k in kids.iter().filter(|k| k.tag() == DW_TAG_subrange_type) {
            let n = match (Debug::udata(k, DW_AT_count), k.attr_value(DW_AT_upper_bound)) {
                (Some(c), _) => Some(c),
                (None, Some(v)) => v.udata_value().map(|u| u.wrapping_add(1)).filter(|&n| n != 0),
                (None, None) => None,
            };
            total = match (total, n) {
                (Some(t), Some(n)) => t.checked_mul(n),
                _ => None,
            };
        }
        Ok(total)
    }

    /// Size in bytes, if the type has one (`void` and function types do not).
    pub fn size_of(&self, ty: TypeRef) -> Result<Option<u64>, String> {
        let ty = self.peel(ty)?;
        if ty == VOID {
            return Ok(None);
        }
        let (_, die) = self.die(ty.0)?;
        if let Some(s) = Debug::udata(&die, DW_AT_byte_size) {
            return Ok(Some(s));
        }
        Ok(match die.tag() {
            DW_TAG_pointer_type | DW_TAG_reference_type => Some(self.abi.word()),
            DW_TAG_array_type => {
                let elem = self.size_of(Debug::type_of(&self.die(ty.0)?.0, &die))?;
                match (elem, self.array_len(ty)?) {
                    (Some(e), Some(n)) => e.checked_mul(n),
                    (Some(_), None) => Some(0),
                    _ => None,
                }
            }
            _ => None,
        })
    }

    /// The C spelling of a type: `struct file *`, `const char *`, `u8[16]`.
    pub fn type_name(&self, ty: TypeRef) -> String {
        if let Some(n) = self.names.borrow().get(&ty.0) {
            return n.clone();
        }
        let n = self.spell(ty, "", 0).unwrap_or_else(|e| format!("<{e}>"));
        self.names.borrow_mut().insert(ty.0, n.clone());
        n
    }

    /// C declarator spelling: `inner` is what is declared so far (`*`, `[16]`, a name).
    fn spell(&self, ty: TypeRef, inner: &str, depth: usize) -> Result<String, String> {
        let join = |base: String| match inner {
            "" => base,
            _ if inner.starts_with('[') => format!("{base}{inner}"),
            _ => format!("{base} {inner}"),
        };
        if ty == VOID {
            return Ok(join("void".into()));
        }
        if depth > MAX_PEEL {
            return Ok(join("...".into()));
        }
        let (unit, die) = self.die(ty.0)?;
        let name = self.name(&unit, &die);
        let next = Debug::type_of(&unit, &die);
        let anon = |kw: &str| format!("{kw} {}", name.clone().unwrap_or_else(|| "<anonymous>".into()));
        Ok(match die.tag() {
            DW_TAG_base_type | DW_TAG_typedef => join(name.unwrap_or_else(|| "?".into())),
            DW_TAG_structure_type => join(anon("struct")),
            DW_TAG_union_type => join(anon("union")),
            DW_TAG_enumeration_type => join(anon("enum")),
            DW_TAG_pointer_type | DW_TAG_reference_type => {
                return self.spell(next, &format!("*{inner}"), depth + 1);
            }
            DW_TAG_const_type | DW_TAG_volatile_type | DW_TAG_restrict_type | DW_TAG_atomic_type => {
                let q = match die.tag() {
                    DW_TAG_const_type => "const",
                    DW_TAG_volatile_type => "volatile",
                    DW_TAG_restrict_type => "restrict",
                    _ => "_Atomic",
                };
                let under = self.spell(next, "", depth + 1)?;
                if under.ends_with('*') { join(format!("{under} {q}")) } else { join(format!("{q} {under}")) }
            }
            DW_TAG_array_type => {
                let dims = match self.array_len(ty)? {
                    Some(n) => format!("[{n}]"),
                    None => "[]".into(),
                };
                let inner = if inner.starts_with('*') {
                    format!("({inner}){dims}")
                } else {
                    format!("{inner}{dims}")
                };
                return self.spell(next, &inner, depth + 1);
            }
            DW_TAG_subroutine_type => {
                let ret = self.spell(next, "", depth + 1)?;
                format!("{ret} ({inner})()")
            }
            t => join(t.static_string().unwrap_or("?").to_owned()),
        })
    }

    /// Member `name` of struct/union `ty`, searching anonymous members too.
    pub fn member(&self, ty: TypeRef, name: &str) -> Result<Member, String> {
        let outer = self.peel(ty)?;
        let shape = self.shape(outer)?;
        match &shape {
            Shape::Struct { size: 0, .. } | Shape::Union { size: 0, .. } => {
                if self.die(outer.0).is_ok_and(|(_, d)| d.attr_value(DW_AT_declaration).is_some()) {
                    return Err(format!(
                        "`{}` has no definition in the vmlinux's DWARF, so it has no members",
                        self.type_name(ty)
                    ));
                }
            }
            Shape::Struct { .. } | Shape::Union { .. } => {}
            Shape::Ptr { .. } => {
                return Err(format!("`{}` is a pointer: use `->{name}`, not `.{name}`", self.type_name(ty)));
            }
            _ => {
                return Err(format!(
                    "`{}` is not a struct or union, so it has no member `{name}`",
                    self.type_name(ty)
                ));
            }
        }
        if let Some(m) = self.find_member(outer, name, 0, 0)? {
            return Ok(m);
        }
        let mut all = Vec::new();
        self.member_names(outer, &mut all, 0)?;
        Err(format!(
            "`{}` has no member `{name}`{}",
            self.type_name(ty),
            did_you_mean(closest(name, all.iter().map(|s| s.as_str())))
        ))
    }

    fn find_member(
        &self,
        outer: TypeRef,
        name: &str,
        base: u64,
        depth: usize,
    ) -> Result<Option<Member>, String> {
        if depth > MAX_PEEL {
            return Ok(None);
        }
        let (unit, kids) = self.children(outer.0)?;
        for k in kids.iter().filter(|k| k.tag() == DW_TAG_member) {
            let ty = Debug::type_of(&unit, k);
            match self.name(&unit, k) {
                Some(n) if n == name => return self.member_at(&unit, k, n, ty, base).map(Some),
                Some(_) => {}
                None => {
                    let off = base + self.data_offset(k);
                    let inner = self.peel(ty)?;
                    if let Some(m) = self.find_member(inner, name, off, depth + 1)? {
                        return Ok(Some(m));
                    }
                }
            }
        }
        Ok(None)
    }

    fn member_names(&self, outer: TypeRef, out: &mut Vec<String>, depth: usize) -> Result<(), String> {
        if depth > MAX_PEEL {
            return Ok(());
        }
        let (unit, kids) = self.children(outer.0)?;
        for k in kids.iter().filter(|k| k.tag() == DW_TAG_member) {
            match self.name(&unit, k) {
                Some(n) => out.push(n),
                None => self.member_names(self.peel(Debug::type_of(&unit, k))?, out, depth + 1)?,
            }
        }
        Ok(())
    }

    /// `DW_AT_data_member_location` as a constant (0 for union members, which have none).
    pub fn data_offset(&self, die: &Die<'a>) -> u64 {
        match die.attr_value(DW_AT_data_member_location) {
            Some(gimli::AttributeValue::Exprloc(e)) => {
                // DWARF 2 style: DW_OP_plus_uconst N
                let mut r = e.0;
                match gimli::Reader::read_u8(&mut r) {
                    Ok(0x23) => gimli::Reader::read_uleb128(&mut r).unwrap_or(0),
                    _ => 0,
                }
            }
            Some(v) => v.udata_value().unwrap_or(0),
            None => 0,
        }
    }

    /// A member with its offset and, for a bitfield, the shift and width after a load of the
    /// storage unit in the kernel's byte order.
    pub fn member_at(
        &self,
        unit: &gimli::Unit<R<'a>>,
        die: &Die<'a>,
        name: String,
        ty: TypeRef,
        base: u64,
    ) -> Result<Member, String> {
        let _ = unit;
        let Some(bit_size) = Debug::udata(die, DW_AT_bit_size) else {
            return Ok(Member { name, offset: base + self.data_offset(die), bits: None, ty });
        };
        let unit_bytes = self.size_of(ty)?.filter(|s| matches!(s, 1 | 2 | 4 | 8)).unwrap_or(4);
        let unit_bits = unit_bytes * 8;
        // DWARF 4+: bit offset from the start of the containing struct (memory order).
        // DWARF 2/3 style: DW_AT_bit_offset counts from the most significant bit of the unit.
        let (start, shift) = if let Some(dbo) = Debug::udata(die, DW_AT_data_bit_offset) {
            let start = dbo / unit_bits * unit_bytes;
            let rel = dbo - start * 8;
            if rel + bit_size > unit_bits {
                return Err(format!("bitfield `{name}` straddles its {unit_bytes}-byte storage unit"));
            }
            let shift = if self.abi.little_endian { rel } else { unit_bits - rel - bit_size };
            (start, shift)
        } else {
            let bo = Debug::udata(die, DW_AT_bit_offset).unwrap_or(0);
            let bytes = Debug::udata(die, DW_AT_byte_size).unwrap_or(unit_bytes);
            let bits = bytes * 8;
            let shift = if self.abi.little_endian { bits.saturating_sub(bo + bit_size) } else { bo };
            (self.data_offset(die), shift)
        };
        Ok(Member { name, offset: base + start, bits: Some((shift as u8, bit_size as u8)), ty })
    }

    /// The name of an enum's value, if it has one.
    pub fn enum_name(&self, ty: TypeRef, value: i64) -> Option<String> {
        let ty = self.peel(ty).ok()?;
        let size = self.size_of(ty).ok().flatten().unwrap_or(8);
        let mask = if size >= 8 { u64::MAX } else { (1u64 << (size * 8)) - 1 };
        self.enumerators(ty)
            .ok()?
            .into_iter()
            .find(|(_, v)| (*v as u64 & mask) == (value as u64 & mask))
            .map(|(n, _)| n)
    }

    /// Every enumerator of an enum type: (name, value).
    pub fn enumerators(&self, ty: TypeRef) -> Result<Vec<(String, i64)>, String> {
        let (unit, kids) = self.children(ty.0)?;
        Ok(kids
            .iter()
            .filter(|k| k.tag() == DW_TAG_enumerator)
            .filter_map(|k| {
                let v = match k.attr_value(DW_AT_const_value)? {
                    gimli::AttributeValue::Sdata(s) => s,
                    v => v.udata_value()? as i64,
                };
                Some((self.name(&unit, k)?, v))
            })
            .collect())
    }

    /// Look a type up by its C name: `struct sk_buff`, `union bpf_attr`, `enum pid_type`, a typedef or
    /// a base type.
    pub fn type_by_name(&self, name: &str) -> Result<TypeRef, String> {
        let key = name.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(o) = self.index.type_get(&key)? {
            return Ok(TypeRef(o));
        }
        // a miss: suggestions need every name
        let index = self.index.full()?;
        let bare = key.rsplit(' ').next().unwrap_or(&key);
        let kinds = ["struct", "union", "enum"];
        let others: Vec<String> = kinds
            .iter()
            .map(|k| format!("{k} {bare}"))
            .chain([bare.to_owned()])
            .filter(|k| *k != key && index.types.get(k).is_some())
            .collect();
        let suggest = if others.is_empty() {
            did_you_mean(closest(&key, index.types.keys()))
        } else {
            did_you_mean(others)
        };
        Err(format!("no type `{key}` in the vmlinux's DWARF{suggest}"))
    }
}

/// `struct`, `union` or `enum` for a tag.
fn tag_keyword(tag: gimli::DwTag) -> &'static str {
    match tag {
        DW_TAG_union_type => "union",
        DW_TAG_enumeration_type => "enum",
        _ => "struct",
    }
}
