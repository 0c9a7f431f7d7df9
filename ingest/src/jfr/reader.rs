//! The JDK Flight Recorder file format (version 2, JDK 11 and later, and async-profiler's
//! output): chunks of events whose layouts the chunk's own metadata event describes, with
//! constants (stack traces, methods, classes, symbols, threads...) in checkpoint events.
//!
//! A chunk starts with a 68-byte header (magic `FLR\0`, version, size, offsets of the last
//! checkpoint and of the metadata, start time, ticks per second, and a flag saying whether
//! integers are LEB128-compressed). Every event is `size, type id, fields...`; type 0 is the
//! metadata (a string table and an element tree of classes and their fields), type 1 a
//! checkpoint (constant pools by class). Everything here is bounds-checked: a bad file is an
//! error naming the chunk and byte, never a panic or an unbounded allocation.

use std::collections::HashMap;

/// Byte offset of the first event in a chunk.
const HEADER_BYTES: usize = 68;
const MAGIC: &[u8; 4] = b"FLR\0";
/// Event type ids with a fixed meaning.
const METADATA: i64 = 0;
const CHECKPOINT: i64 = 1;
/// How deep values and metadata elements may nest.
const MAX_DEPTH: usize = 32;
/// The constant pools kept: those stack traces, frame names and thread states are read from.
/// Others (threads, modules, packages, class loaders...) are read past and dropped.
const KEPT_POOLS: &[&str] = &[
    "jdk.types.StackTrace",
    "jdk.types.Method",
    "java.lang.Class",
    "jdk.types.Symbol",
    "jdk.types.ThreadState",
    "java.lang.String",
];

pub(super) type Result<T> = std::result::Result<T, String>;

/// A decoded field value. Booleans and bytes are integers; a constant is a reference into the
/// pool of its class; an inline object keeps its class.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Int(i64),
    /// A float or double (no event Hearth reads uses one).
    Float,
    Str(Option<String>),
    /// A string in the `java.lang.String` pool.
    StrRef(i64),
    Ref(u64, i64),
    Array(Vec<Value>),
    Object(u64, Vec<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Boolean,
    Byte,
    Short,
    Char,
    Int,
    Long,
    Float,
    Double,
    String,
    Object,
}

#[derive(Debug)]
pub(super) struct Class {
    pub name: String,
    fields: Vec<Field>,
    kind: Kind,
}

#[derive(Debug)]
struct Field {
    name: String,
    class: u64,
    pooled: bool,
    array: bool,
}

impl Class {
    /// The position of field `name`, if the class has it.
    pub(super) fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// One chunk, parsed up to its events: classes, constants, and where the events are.
pub(super) struct Chunk<'a> {
    data: &'a [u8],
    compressed: bool,
    pub ticks_per_second: i64,
    pub classes: HashMap<u64, Class>,
    pools: HashMap<u64, HashMap<i64, Value>>,
    /// The classes whose constants are kept (see [`KEPT_POOLS`]).
    kept: Vec<u64>,
    string_class: Option<u64>,
    /// See [`Chunk::events`].
    events: Vec<(u64, usize)>,
}

/// Splits a recording into its chunks and parses each one's metadata and constants.
pub(super) fn chunks(file: &[u8]) -> Result<Vec<Chunk<'_>>> {
    let mut out = Vec::new();
    let mut rest = file;
    while !rest.is_empty() {
        let n = out.len();
        let chunk = Chunk::parse(rest).map_err(|e| format!("chunk {n}: {e}"))?;
        rest = &rest[chunk.data.len()..];
        out.push(chunk);
    }
    if out.is_empty() {
        return Err("the recording is empty".into());
    }
    Ok(out)
}

impl<'a> Chunk<'a> {
    fn parse(file: &'a [u8]) -> Result<Self> {
        if file.len() < HEADER_BYTES {
            return Err(format!(
                "{} bytes is too short for a chunk header ({HEADER_BYTES})",
                file.len()
            ));
        }
        if &file[..4] != MAGIC {
            return Err("it does not start with the JFR magic FLR\\0".into());
        }
        let mut header = Cursor::new(file, false);
        header.pos = 4;
        let major = header.fixed(2)?;
        if major != 2 {
            return Err(format!(
                "format version {major} is not supported (version 2 is)"
            ));
        }
        header.pos = 8;
        let size = header.fixed(8)?;
        let checkpoint = header.fixed(8)?;
        let metadata = header.fixed(8)?;
        let _start_nanos = header.fixed(8)?;
        let _duration = header.fixed(8)?;
        let _start_ticks = header.fixed(8)?;
        let ticks_per_second = header.fixed(8)?;
        let features = header.fixed(4)?;
        let size = usize::try_from(size)
            .ok()
            .filter(|s| (HEADER_BYTES..=file.len()).contains(s))
            .ok_or_else(|| format!("its size {size} is outside the {} bytes left", file.len()))?;
        let data = &file[..size];
        let offset = |at: i64, what: &str| {
            usize::try_from(at)
                .ok()
                .filter(|a| (HEADER_BYTES..size).contains(a))
                .ok_or_else(|| {
                    format!("the {what} offset {at} is outside the chunk ({size} bytes)")
                })
        };
        let metadata = offset(metadata, "metadata")?;
        offset(checkpoint, "checkpoint")?;
        let mut chunk = Chunk {
            data,
            compressed: features & 1 == 1,
            ticks_per_second,
            classes: HashMap::new(),
            pools: HashMap::new(),
            kept: Vec::new(),
            string_class: None,
            events: Vec::new(),
        };
        chunk.read_metadata(metadata)?;
        chunk.kept = KEPT_POOLS
            .iter()
            .filter_map(|name| chunk.class_named(name))
            .collect();
        // One pass over the events: every checkpoint (not only the chain from the header's:
        // recorders that flush write several) is read now, the others kept for the caller.
        let mut checkpoints = Vec::new();
        for (kind, at) in chunk.scan()? {
            match kind {
                CHECKPOINT => checkpoints.push(at),
                METADATA => {}
                _ => chunk.events.push((kind as u64, at)),
            }
        }
        for at in checkpoints {
            chunk.read_checkpoint(at)?;
        }
        Ok(chunk)
    }

    fn cursor(&self, pos: usize) -> Cursor<'a> {
        let mut cursor = Cursor::new(self.data, self.compressed);
        cursor.pos = pos;
        cursor
    }

    /// Every event of the chunk: its type id and where its fields start.
    fn scan(&self) -> Result<Vec<(i64, usize)>> {
        let mut out = Vec::new();
        let mut pos = HEADER_BYTES;
        while pos < self.data.len() {
            let mut cursor = self.cursor(pos);
            let size = cursor.int()?;
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s > 0 && pos + s <= self.data.len())
                .ok_or_else(|| format!("the event at byte {pos} has size {size}"))?;
            out.push((cursor.long()?, cursor.pos));
            pos += size;
        }
        Ok(out)
    }

    /// The chunk's events other than metadata and checkpoints: type id and where the fields
    /// start, in file order.
    pub(super) fn events(&self) -> &[(u64, usize)] {
        &self.events
    }

    fn read_metadata(&mut self, at: usize) -> Result<()> {
        let mut c = self.cursor(at);
        let _size = c.int()?;
        let kind = c.long()?;
        if kind != METADATA {
            return Err(format!(
                "the event at the metadata offset {at} has type {kind}, not 0"
            ));
        }
        let _start = c.long()?;
        let _duration = c.long()?;
        let _id = c.long()?;
        let count = c.count()?;
        let mut strings = Vec::with_capacity(count);
        for _ in 0..count {
            strings.push(c.string()?.unwrap_or_default());
        }
        let root = element(&mut c, &strings, 0)?;
        for section in &root.children {
            if section.name != "metadata" {
                continue;
            }
            for class in section.children.iter().filter(|e| e.name == "class") {
                let id = class.number("id")?;
                let name = class.attribute("name").unwrap_or_default().to_string();
                let fields = class
                    .children
                    .iter()
                    .filter(|e| e.name == "field")
                    .map(|f| {
                        Ok(Field {
                            name: f.attribute("name").unwrap_or_default().to_string(),
                            class: f.number("class")?,
                            pooled: f.attribute("constantPool") == Some("true"),
                            array: f.attribute("dimension") == Some("1"),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let kind = match name.as_str() {
                    "boolean" => Kind::Boolean,
                    "byte" => Kind::Byte,
                    "short" => Kind::Short,
                    "char" => Kind::Char,
                    "int" => Kind::Int,
                    "long" => Kind::Long,
                    "float" => Kind::Float,
                    "double" => Kind::Double,
                    "java.lang.String" => {
                        self.string_class = Some(id);
                        Kind::String
                    }
                    _ => Kind::Object,
                };
                self.classes.insert(id, Class { name, fields, kind });
            }
        }
        Ok(())
    }

    fn read_checkpoint(&mut self, at: usize) -> Result<()> {
        let mut c = self.cursor(at);
        let at_byte = |e: String| format!("the checkpoint at byte {at}: {e}");
        let _start = c.long().map_err(at_byte)?;
        let _duration = c.long().map_err(at_byte)?;
        let _delta = c.long().map_err(at_byte)?;
        let _mask = c.byte().map_err(at_byte)?;
        let pools = c.count().map_err(at_byte)?;
        for _ in 0..pools {
            let class = c.long().map_err(at_byte)? as u64;
            let constants = c.count().map_err(at_byte)?;
            let kept = self.kept.contains(&class);
            for _ in 0..constants {
                let key = c.long().map_err(at_byte)?;
                let value = self.read_class(&mut c, class, 0).map_err(at_byte)?;
                if kept {
                    self.pools.entry(class).or_default().insert(key, value);
                }
            }
        }
        Ok(())
    }

    /// The fields of the event of class `class` whose fields start at `pos`.
    pub(super) fn read_event(&self, class: u64, pos: usize) -> Result<Value> {
        let mut c = self.cursor(pos);
        self.read_class(&mut c, class, 0)
            .map_err(|e| format!("the event at byte {pos}: {e}"))
    }

    fn read_class(&self, c: &mut Cursor<'_>, class: u64, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(format!("values nest deeper than {MAX_DEPTH}"));
        }
        let Some(meta) = self.classes.get(&class) else {
            return Err(format!("class id {class} is not in the metadata"));
        };
        Ok(match meta.kind {
            Kind::Boolean | Kind::Byte => Value::Int(i64::from(c.byte()? as i8)),
            Kind::Short | Kind::Char => Value::Int(c.short()?),
            Kind::Int => Value::Int(c.int()?),
            Kind::Long => Value::Int(c.long()?),
            Kind::Float => {
                c.bytes(4)?;
                Value::Float
            }
            Kind::Double => {
                c.bytes(8)?;
                Value::Float
            }
            Kind::String => match c.string_or_ref()? {
                StringValue::Inline(s) => Value::Str(s),
                StringValue::Pool(key) => Value::StrRef(key),
            },
            Kind::Object => {
                let mut values = Vec::with_capacity(meta.fields.len());
                for field in &meta.fields {
                    let one = |c: &mut Cursor<'_>| -> Result<Value> {
                        if field.pooled {
                            Ok(Value::Ref(field.class, c.long()?))
                        } else {
                            self.read_class(c, field.class, depth + 1)
                        }
                    };
                    let value = if field.array {
                        let n = c.count()?;
                        let mut items = Vec::with_capacity(n);
                        for _ in 0..n {
                            items.push(one(c)?);
                        }
                        Value::Array(items)
                    } else {
                        one(c)?
                    };
                    values.push(value);
                }
                Value::Object(class, values)
            }
        })
    }

    /// The constant `key` of class `class`.
    pub(super) fn constant(&self, class: u64, key: i64) -> Option<&Value> {
        self.pools.get(&class)?.get(&key)
    }

    /// `value` itself, or the constant it refers to.
    pub(super) fn resolve<'v>(&'v self, value: &'v Value) -> Option<&'v Value> {
        match value {
            Value::Ref(class, key) => self.constant(*class, *key),
            other => Some(other),
        }
    }

    /// Field `name` of an object value (resolved first when it is a constant).
    pub(super) fn get<'v>(&'v self, value: &'v Value, name: &str) -> Option<&'v Value> {
        let Value::Object(class, fields) = self.resolve(value)? else {
            return None;
        };
        fields.get(self.classes.get(class)?.field(name)?)
    }

    /// A string value, following the string pool.
    pub(super) fn text<'v>(&'v self, value: &'v Value) -> Option<&'v str> {
        match self.resolve(value)? {
            Value::Str(s) => s.as_deref(),
            Value::StrRef(key) => match self.constant(self.string_class?, *key)? {
                Value::Str(s) => s.as_deref(),
                _ => None,
            },
            _ => None,
        }
    }

    /// An integer field of an object.
    pub(super) fn int(&self, value: &Value, name: &str) -> Option<i64> {
        match self.get(value, name)? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The class id named `name` in this chunk's metadata.
    pub(super) fn class_named(&self, name: &str) -> Option<u64> {
        self.classes
            .iter()
            .find(|(_, c)| c.name == name)
            .map(|(id, _)| *id)
    }
}

/// A metadata element: a name, attributes and children.
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Element>,
}

impl Element {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, name: &str) -> Result<u64> {
        let text = self.attribute(name).unwrap_or_default();
        text.parse()
            .map_err(|_| format!("a {} element's {name} {text:?} is not a number", self.name))
    }
}

fn element(c: &mut Cursor<'_>, strings: &[String], depth: usize) -> Result<Element> {
    if depth > MAX_DEPTH {
        return Err(format!("metadata elements nest deeper than {MAX_DEPTH}"));
    }
    let string = |c: &mut Cursor<'_>| -> Result<String> {
        let i = c.int()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| strings.get(i))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "metadata string {i} is outside its {} strings",
                    strings.len()
                )
            })
    };
    let name = string(c)?;
    let count = c.count()?;
    let mut attributes = Vec::with_capacity(count);
    for _ in 0..count {
        attributes.push((string(c)?, string(c)?));
    }
    let count = c.count()?;
    let mut children = Vec::with_capacity(count);
    for _ in 0..count {
        children.push(element(c, strings, depth + 1)?);
    }
    Ok(Element {
        name,
        attributes,
        children,
    })
}

enum StringValue {
    Inline(Option<String>),
    Pool(i64),
}

/// Reads the chunk's integers: LEB128 when the chunk is compressed, big-endian otherwise.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    compressed: bool,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8], compressed: bool) -> Self {
        Cursor {
            data,
            pos: 0,
            compressed,
        }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "{n} bytes at byte {} run past the end ({} bytes)",
                    self.pos,
                    self.data.len()
                )
            })?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// A big-endian integer of `n` bytes.
    fn fixed(&mut self, n: usize) -> Result<i64> {
        Ok(self
            .bytes(n)?
            .iter()
            .fold(0u64, |v, b| (v << 8) | u64::from(*b)) as i64)
    }

    /// JFR's LEB128: seven bits a byte, the ninth byte all eight.
    fn varint(&mut self) -> Result<i64> {
        let mut value = 0u64;
        for i in 0..8 {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value as i64);
            }
        }
        Ok((value | (u64::from(self.byte()?) << 56)) as i64)
    }

    fn short(&mut self) -> Result<i64> {
        if self.compressed {
            self.varint()
        } else {
            Ok(i64::from(self.fixed(2)? as i16))
        }
    }

    fn int(&mut self) -> Result<i64> {
        if self.compressed {
            Ok(i64::from(self.varint()? as i32))
        } else {
            Ok(i64::from(self.fixed(4)? as i32))
        }
    }

    fn long(&mut self) -> Result<i64> {
        if self.compressed {
            self.varint()
        } else {
            self.fixed(8)
        }
    }

    /// A count of items that follow: at most one per byte left.
    fn count(&mut self) -> Result<usize> {
        let n = self.int()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.data.len() - self.pos)
            .ok_or_else(|| format!("a count of {n} at byte {} is impossible", self.pos))
    }

    fn string(&mut self) -> Result<Option<String>> {
        match self.string_or_ref()? {
            StringValue::Inline(s) => Ok(s),
            StringValue::Pool(_) => Err("a metadata string refers to the string pool".into()),
        }
    }

    fn string_or_ref(&mut self) -> Result<StringValue> {
        let encoding = self.byte()?;
        Ok(StringValue::Inline(match encoding {
            0 => None,
            1 => Some(String::new()),
            2 => return Ok(StringValue::Pool(self.long()?)),
            3 | 5 => {
                let n = self.count()?;
                let bytes = self.bytes(n)?;
                Some(match encoding {
                    3 => String::from_utf8_lossy(bytes).into_owned(),
                    _ => bytes.iter().map(|&b| char::from(b)).collect(),
                })
            }
            4 => {
                let n = self.count()?;
                let mut units = Vec::with_capacity(n);
                for _ in 0..n {
                    units.push(self.short()? as u16);
                }
                Some(String::from_utf16_lossy(&units))
            }
            other => {
                return Err(format!(
                    "string encoding {other} at byte {} is unknown",
                    self.pos - 1
                ));
            }
        }))
    }
}
