//! HEIC / HEIF read by hand from its ISO-BMFF boxes: the primary item's size
//! (`ispe`, turned by `irot`) and where the Exif and XMP items lie, so that
//! they can be overwritten in place. There is no HEVC decoder here, so no
//! pixels are read and no thumbnail is made.
//!
//! Every read is bounds-checked: a box, a field or an extent that does not fit
//! in the bytes given makes the file unreadable, never a panic. Every item's
//! extents in this file must lie inside it, so a file cut short is refused.

use std::collections::HashSet;
use std::ops::Range;

/// Why a file is not a HEIF this module can read. The caller answers all of
/// them as one "not a readable image"; the reason helps the tests only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Malformed {
    /// A box, field or extent runs past the bytes it lives in.
    Truncated,
    /// The boxes are present but say something this reader refuses.
    Invalid(&'static str),
}

type Result<T> = std::result::Result<T, Malformed>;

/// What the container says about the picture it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Heif {
    /// The primary item's size as displayed: `ispe` with `irot`'s quarter
    /// turns applied (a clean-aperture crop, `clap`, is not applied).
    pub width: u32,
    pub height: u32,
    /// The byte ranges of the file holding Exif and XMP items, in item order,
    /// each item's extents in its own order.
    metadata: Vec<Vec<Range<usize>>>,
}

impl Heif {
    /// Reads the container. Refuses anything but a HEIF whose primary item
    /// has a size and whose items' data lie within `file`.
    pub fn parse(file: &[u8]) -> Result<Heif> {
        let top = children(file, 0)?;
        let ftyp = top.first().filter(|b| &b.kind == b"ftyp");
        let ftyp = ftyp.ok_or(Malformed::Invalid("no ftyp box first"))?;
        if !is_heif_brand(ftyp.body(file)) {
            return Err(Malformed::Invalid("no HEIF brand"));
        }
        let meta = top.iter().find(|b| &b.kind == b"meta");
        let meta = meta.ok_or(Malformed::Invalid("no meta box"))?;
        // `meta` is a full box: version and flags come before its children.
        let meta_children_at = meta.body.start.checked_add(4).ok_or(Malformed::Truncated)?;
        let meta_children = file
            .get(meta_children_at..meta.body.end)
            .ok_or(Malformed::Truncated)?;
        let boxes = children(meta_children, meta_children_at)?;
        let find = |kind: &[u8; 4]| boxes.iter().find(|b| &b.kind == kind);

        let pitm = find(b"pitm").ok_or(Malformed::Invalid("no primary item"))?;
        let primary = parse_pitm(pitm.body(file))?;
        let items = find(b"iinf").map_or(Ok(Vec::new()), |b| parse_iinf(file, b))?;
        let locations = find(b"iloc").map_or(Ok(Vec::new()), |b| parse_iloc(b.body(file)))?;
        let iprp = find(b"iprp").ok_or(Malformed::Invalid("no item properties"))?;
        let (width, height) = primary_size(file, iprp, primary)?;
        let idat = find(b"idat").map(|b| b.body.clone());

        // Every item stored in this file must fit in it: a file cut short
        // (its `mdat` truncated) is refused here, as the other formats'
        // decoders refuse theirs.
        let mut resolved = Vec::with_capacity(locations.len());
        for location in &locations {
            resolved.push((location.item, resolve(location, file.len(), idat.as_ref())?));
        }

        let metadata_ids: HashSet<u32> = items
            .iter()
            .filter(|item| {
                &item.kind == b"Exif"
                    || (&item.kind == b"mime"
                        && item.content_type.starts_with(b"application/rdf+xml"))
            })
            .map(|item| item.id)
            .collect();
        // The other items' bytes, sorted by start, with the furthest end
        // reached so far: whether a range meets any of them is one binary
        // search, so a file listing many items costs n log n, not n².
        let mut others: Vec<Range<usize>> = resolved
            .iter()
            .filter(|(id, _)| !metadata_ids.contains(id))
            .flat_map(|(_, ranges)| ranges.iter().flatten().cloned())
            .filter(|range| !range.is_empty())
            .collect();
        others.sort_unstable_by_key(|range| range.start);
        let furthest: Vec<usize> = others
            .iter()
            .scan(0, |end, range| {
                *end = range.end.max(*end);
                Some(*end)
            })
            .collect();
        let meets_another = |range: &Range<usize>| {
            let before_end = others.partition_point(|other| other.start < range.end);
            before_end > 0 && furthest[before_end - 1] > range.start
        };

        let mut metadata = Vec::new();
        let mut located = HashSet::new();
        for (item, ranges) in &resolved {
            let Some(ranges) = ranges else { continue };
            if !metadata_ids.contains(item) {
                continue;
            }
            // Overwriting must touch the metadata alone: never a box of
            // `meta` (outside `idat`), never another item's data.
            for range in ranges.iter().filter(|range| !range.is_empty()) {
                let in_idat = idat
                    .as_ref()
                    .is_some_and(|idat| idat.start <= range.start && range.end <= idat.end);
                if overlaps(range, &meta.whole) && !in_idat {
                    return Err(Malformed::Invalid("metadata overlaps the meta box"));
                }
                if meets_another(range) {
                    return Err(Malformed::Invalid(
                        "metadata shares bytes with an image item",
                    ));
                }
            }
            located.insert(*item);
            metadata.push(ranges.clone());
        }
        // An Exif or XMP item whose bytes could not be located cannot be
        // stripped: refused rather than stored with its location inside.
        if metadata_ids.iter().any(|id| !located.contains(id)) {
            return Err(Malformed::Invalid(
                "metadata item without a location in this file",
            ));
        }
        Ok(Heif {
            width,
            height,
            metadata,
        })
    }

    /// The file with every Exif and XMP item's bytes overwritten in place:
    /// same length, so no offset anywhere moves. An Exif item becomes a valid
    /// Exif block with no tags when it has room for one (18 bytes), zeros
    /// otherwise; an XMP item becomes zeros.
    pub fn strip(&self, file: &[u8]) -> Vec<u8> {
        let mut out = file.to_vec();
        for ranges in &self.metadata {
            // The payload of an Exif item: a 4-byte offset to the TIFF header
            // (0: right after it), then a TIFF header whose first IFD (at 8)
            // has no entries and no next IFD.
            const EMPTY_EXIF: [u8; 18] =
                [0, 0, 0, 0, b'M', b'M', 0, 42, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0];
            let total: usize = ranges.iter().map(|r| r.len()).sum();
            let mut replacement = EMPTY_EXIF
                .iter()
                .copied()
                .filter(|_| total >= EMPTY_EXIF.len())
                .chain(std::iter::repeat(0));
            for range in ranges {
                // `parse` checked each range lies within the file.
                if let Some(bytes) = out.get_mut(range.clone()) {
                    for byte in bytes {
                        *byte = replacement.next().unwrap_or(0);
                    }
                }
            }
        }
        out
    }
}

/// One box: its four-character type, its whole extent and its body's, both
/// as absolute offsets in the file.
#[derive(Debug, Clone)]
struct BoxRef {
    kind: [u8; 4],
    whole: Range<usize>,
    body: Range<usize>,
}

impl BoxRef {
    fn body<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        // Built by `children` from ranges it checked against the same file.
        file.get(self.body.clone()).unwrap_or_default()
    }
}

/// The boxes laid end to end in `data`, which starts at offset `base` of the
/// file. A size of 0 runs to the end of `data`, a size of 1 is followed by a
/// 64-bit size.
fn children(data: &[u8], base: usize) -> Result<Vec<BoxRef>> {
    let mut boxes = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let mut r = Reader::new(data.get(at..).ok_or(Malformed::Truncated)?);
        let size32 = r.u32()?;
        let kind = r.array::<4>()?;
        let (size, header) = match size32 {
            0 => (data.len() - at, 8),
            1 => (
                usize::try_from(r.u64()?).map_err(|_| Malformed::Truncated)?,
                16,
            ),
            n => (usize::try_from(n).map_err(|_| Malformed::Truncated)?, 8),
        };
        if size < header {
            return Err(Malformed::Invalid("box smaller than its header"));
        }
        let end = at.checked_add(size).ok_or(Malformed::Truncated)?;
        if end > data.len() {
            return Err(Malformed::Truncated);
        }
        boxes.push(BoxRef {
            kind,
            whole: base + at..base + end,
            body: base + at + header..base + end,
        });
        at = end;
    }
    Ok(boxes)
}

fn is_heif_brand(ftyp: &[u8]) -> bool {
    const BRANDS: [&[u8; 4]; 9] = [
        b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"mif1", b"msf1",
    ];
    // major brand, minor version, then compatible brands
    let major = ftyp.get(..4);
    let compatible = ftyp.get(8..).unwrap_or_default().chunks_exact(4);
    major
        .into_iter()
        .chain(compatible)
        .any(|brand| BRANDS.iter().any(|b| b.as_slice() == brand))
}

fn parse_pitm(body: &[u8]) -> Result<u32> {
    let mut r = Reader::new(body);
    let (version, _) = r.full_box()?;
    if version == 0 {
        Ok(u32::from(r.u16()?))
    } else {
        r.u32()
    }
}

/// One entry of `iinf`: an item's id and type (and MIME type for `mime`).
#[derive(Debug)]
struct ItemInfo {
    id: u32,
    kind: [u8; 4],
    content_type: Vec<u8>,
}

fn parse_iinf(file: &[u8], iinf: &BoxRef) -> Result<Vec<ItemInfo>> {
    let mut r = Reader::new(iinf.body(file));
    let (version, _) = r.full_box()?;
    if version == 0 {
        r.u16()?;
    } else {
        r.u32()?;
    }
    let entries_at = iinf.body.start + r.pos;
    let entries = file
        .get(entries_at..iinf.body.end)
        .ok_or(Malformed::Truncated)?;
    let mut items = Vec::new();
    for infe in children(entries, entries_at)? {
        if &infe.kind != b"infe" {
            continue;
        }
        let mut r = Reader::new(infe.body(file));
        let (version, _) = r.full_box()?;
        // Versions 0 and 1 carry no item type: nothing this reader needs.
        if version < 2 {
            continue;
        }
        let id = if version == 2 {
            u32::from(r.u16()?)
        } else {
            r.u32()?
        };
        r.u16()?; // protection index
        let kind = r.array::<4>()?;
        r.cstr()?; // name
        let content_type = if &kind == b"mime" {
            r.cstr()?.to_vec()
        } else {
            Vec::new()
        };
        items.push(ItemInfo {
            id,
            kind,
            content_type,
        });
    }
    Ok(items)
}

/// One entry of `iloc`: where an item's bytes are.
#[derive(Debug)]
struct Location {
    item: u32,
    method: u8,
    data_reference: u16,
    base_offset: u64,
    extents: Vec<(u64, u64)>,
}

fn parse_iloc(body: &[u8]) -> Result<Vec<Location>> {
    let mut r = Reader::new(body);
    let (version, _) = r.full_box()?;
    if version > 2 {
        return Err(Malformed::Invalid("iloc version"));
    }
    let sizes = r.u8()?;
    let (offset_size, length_size) = (sizes >> 4, sizes & 0xF);
    let sizes = r.u8()?;
    let base_offset_size = sizes >> 4;
    let index_size = if version == 0 { 0 } else { sizes & 0xF };
    let count = if version < 2 {
        u32::from(r.u16()?)
    } else {
        r.u32()?
    };
    let mut locations = Vec::new();
    for _ in 0..count {
        let item = if version < 2 {
            u32::from(r.u16()?)
        } else {
            r.u32()?
        };
        let method = if version == 0 {
            0
        } else {
            (r.u16()? & 0xF) as u8
        };
        let data_reference = r.u16()?;
        let base_offset = r.sized(base_offset_size)?;
        let extent_count = r.u16()?;
        let mut extents = Vec::new();
        for _ in 0..extent_count {
            r.sized(index_size)?;
            let offset = r.sized(offset_size)?;
            let length = r.sized(length_size)?;
            extents.push((offset, length));
        }
        locations.push(Location {
            item,
            method,
            data_reference,
            base_offset,
            extents,
        });
    }
    Ok(locations)
}

/// An item's extents as byte ranges of the file, or `None` for data this
/// file does not hold (another file's, or built from other items).
fn resolve(
    location: &Location,
    file_len: usize,
    idat: Option<&Range<usize>>,
) -> Result<Option<Vec<Range<usize>>>> {
    if location.data_reference != 0 {
        return Ok(None);
    }
    let source = match location.method {
        0 => 0..file_len,
        1 => idat
            .cloned()
            .ok_or(Malformed::Invalid("item in idat without idat"))?,
        _ => return Ok(None),
    };
    let mut ranges = Vec::with_capacity(location.extents.len());
    for &(offset, length) in &location.extents {
        let offset = location
            .base_offset
            .checked_add(offset)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(Malformed::Truncated)?;
        let start = source
            .start
            .checked_add(offset)
            .ok_or(Malformed::Truncated)?;
        // A length of 0 runs to the end of the source.
        let end = if length == 0 {
            source.end
        } else {
            usize::try_from(length)
                .ok()
                .and_then(|l| start.checked_add(l))
                .ok_or(Malformed::Truncated)?
        };
        if start > end || end > source.end {
            return Err(Malformed::Truncated);
        }
        ranges.push(start..end);
    }
    Ok(Some(ranges))
}

/// The primary item's `ispe`, with width and height swapped when its
/// `irot` turns it a quarter (or three quarters).
fn primary_size(file: &[u8], iprp: &BoxRef, primary: u32) -> Result<(u32, u32)> {
    let boxes = children(iprp.body(file), iprp.body.start)?;
    let ipco = boxes.iter().find(|b| &b.kind == b"ipco");
    let ipco = ipco.ok_or(Malformed::Invalid("no ipco"))?;
    let properties = children(ipco.body(file), ipco.body.start)?;
    let mut indices = Vec::new();
    for ipma in boxes.iter().filter(|b| &b.kind == b"ipma") {
        let mut r = Reader::new(ipma.body(file));
        let (version, flags) = r.full_box()?;
        let entries = r.u32()?;
        for _ in 0..entries {
            let item = if version < 1 {
                u32::from(r.u16()?)
            } else {
                r.u32()?
            };
            let associations = r.u8()?;
            for _ in 0..associations {
                // the top bit says "essential"; the rest is a 1-based index
                let index = if flags & 1 == 1 {
                    usize::from(r.u16()? & 0x7FFF)
                } else {
                    usize::from(r.u8()? & 0x7F)
                };
                if item == primary && index > 0 {
                    indices.push(index - 1);
                }
            }
        }
    }
    let mut size = None;
    let mut quarter_turns = 0u8;
    for property in indices.iter().filter_map(|&i| properties.get(i)) {
        match &property.kind {
            b"ispe" if size.is_none() => {
                let mut r = Reader::new(property.body(file));
                r.full_box()?;
                size = Some((r.u32()?, r.u32()?));
            }
            b"irot" => {
                quarter_turns = Reader::new(property.body(file)).u8()? & 3;
            }
            _ => {}
        }
    }
    let (width, height) = size.ok_or(Malformed::Invalid("primary item without ispe"))?;
    if width == 0 || height == 0 {
        return Err(Malformed::Invalid("empty primary item"));
    }
    Ok(if quarter_turns % 2 == 1 {
        (height, width)
    } else {
        (width, height)
    })
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Big-endian fields read from a slice; every read checks it fits.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Malformed::Truncated)?;
        let bytes = self.data.get(self.pos..end).ok_or(Malformed::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A field of 0, 4 or 8 bytes, as `iloc` sizes them.
    fn sized(&mut self, size: u8) -> Result<u64> {
        match size {
            0 => Ok(0),
            4 => Ok(u64::from(self.u32()?)),
            8 => self.u64(),
            _ => Err(Malformed::Invalid("field size not 0, 4 or 8")),
        }
    }

    /// A full box's version and 24-bit flags.
    fn full_box(&mut self) -> Result<(u8, u32)> {
        let word = self.u32()?;
        Ok(((word >> 24) as u8, word & 0x00FF_FFFF))
    }

    /// A NUL-terminated string, without its NUL.
    fn cstr(&mut self) -> Result<&'a [u8]> {
        let rest = self.data.get(self.pos..).ok_or(Malformed::Truncated)?;
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(Malformed::Truncated)?;
        let s = self.take(len)?;
        self.pos += 1;
        Ok(s)
    }
}
