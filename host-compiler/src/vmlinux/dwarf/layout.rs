//! Whole-type layouts for `ktap-host symbols type` and tracepoint records: every member with its
//! offset, size and type, anonymous structs and unions nested, like `pahole -C`.

use gimli::constants::*;
use serde::Serialize;

use super::Debug;
use crate::ktypes::{Shape, TypeRef};

/// Nesting deeper than this is malformed DWARF.
const MAX_NEST: usize = 16;

/// A struct, union or enum laid out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// `struct`, `union`, `enum`, or the spelling of another type.
    pub kind: String,
    /// The tag (empty if anonymous).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Members in declaration order (structs and unions).
    pub members: Vec<LayoutMember>,
    /// Values (enums).
    pub enumerators: Vec<(String, i64)>,
}

/// One member of a [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayoutMember {
    /// Name (empty for an anonymous struct or union).
    pub name: String,
    /// C spelling of its type.
    pub ty: String,
    /// Byte offset from the start of the outermost type.
    pub offset: u64,
    /// Bytes (of the storage unit, for a bitfield).
    pub size: u64,
    /// For a bitfield: (shift after loading the unit in the kernel's byte order, bit size).
    pub bits: Option<(u8, u8)>,
    /// The members of an anonymous struct or union, laid out in place.
    pub nested: Option<Box<Layout>>,
}

impl Debug<'_> {
    /// The layout of `ty` (typedefs peeled).
    pub fn layout(&self, ty: TypeRef) -> Result<Layout, String> {
        self.layout_at(ty, 0, 0)
    }

    fn layout_at(&self, ty: TypeRef, base: u64, depth: usize) -> Result<Layout, String> {
        let ty = self.peel(ty)?;
        let shape = self.shape(ty)?;
        let size = self.size_of(ty)?.unwrap_or(0);
        let (kind, name) = match &shape {
            Shape::Struct { name, .. } => ("struct", name.clone()),
            Shape::Union { name, .. } => ("union", name.clone()),
            Shape::Enum { name, .. } => {
                return Ok(Layout {
                    kind: "enum".into(),
                    name: name.clone(),
                    size,
                    members: Vec::new(),
                    enumerators: self.enumerators(ty)?,
                });
            }
            _ => {
                let kind = self.type_name(ty);
                return Ok(Layout {
                    kind,
                    name: String::new(),
                    size,
                    members: Vec::new(),
                    enumerators: Vec::new(),
                });
            }
        };
        let mut members = Vec::new();
        if depth <= MAX_NEST {
            let (unit, kids) = self.children(ty.0)?;
            for k in kids.iter().filter(|k| k.tag() == DW_TAG_member) {
                let mty = Debug::type_of(&unit, k);
                let name = self.name(&unit, k).unwrap_or_default();
                let m = self.member_at(&unit, k, name, mty, base)?;
                let size = self.size_of(mty)?.unwrap_or(0);
                let nested = if m.name.is_empty() {
                    Some(Box::new(self.layout_at(mty, m.offset, depth + 1)?))
                } else {
                    None
                };
                members.push(LayoutMember {
                    name: m.name,
                    ty: self.type_name(mty),
                    offset: m.offset,
                    size,
                    bits: m.bits,
                    nested,
                });
            }
        }
        Ok(Layout { kind: kind.into(), name, size, members, enumerators: Vec::new() })
    }
}
