//! A Python pickle *reader* that builds a value tree and never executes anything.
//!
//! Weight files published for Python (numpy pickles, PyTorch/TorchScript `data.pkl`) describe
//! their arrays with `GLOBAL` references and `REDUCE` calls. A real unpickler would import and
//! call those; this one records them as inert [`Value::Call`] nodes, so a hostile file can at
//! worst produce a tree the caller refuses. Containers are shared (`Rc<RefCell>`) because the
//! pickle memo aliases them: a `BUILD` or `SETITEMS` after `MEMOIZE` must be visible through
//! later `BINGET`s.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// One unpickled value.
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A reference to `module.name`, never resolved.
    Global(Rc<(String, String)>),
    /// `func(*args)` from `REDUCE` or `NEWOBJ`, with the state a later `BUILD` gave it.
    Call(Rc<Call>),
    /// A persistent id (PyTorch uses these to point at tensor storages).
    PersistentId(Rc<Value>),
}

#[derive(Debug)]
pub struct Call {
    pub func: Value,
    pub args: Value,
    pub state: RefCell<Option<Value>>,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    /// `(module, name)` of a global.
    pub fn global(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global(g) => Some((&g.0, &g.1)),
            _ => None,
        }
    }

    /// The value under string key `key` of a dict.
    pub fn get(&self, key: &str) -> Option<Value> {
        match self {
            Value::Dict(d) => d.borrow().iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v.clone()),
            _ => None,
        }
    }
}

/// Why a pickle could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError(pub String);

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, PickleError> {
    Err(PickleError(msg.into()))
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return err(format!("truncated at byte {} (wanted {n} more)", self.pos));
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    }
    fn u32(&mut self) -> Result<usize, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn u64(&mut self) -> Result<usize, PickleError> {
        let b = self.take(8)?;
        usize::try_from(u64::from_le_bytes(b.try_into().expect("8 bytes"))).or_else(|_| err("length overflows"))
    }
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return err("unterminated text line");
        };
        let s = std::str::from_utf8(&rest[..n]).or_else(|_| err("non-UTF-8 text line"))?;
        self.pos += n + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<Value, PickleError> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).or_else(|_| err("non-UTF-8 string"))?;
        Ok(Value::Str(Rc::from(s)))
    }
}

/// Reads one pickle (protocols 2–5, the binary opcodes weight files use).
pub fn parse(data: &[u8]) -> Result<Value, PickleError> {
    let mut r = Reader { data, pos: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    // A map, not a vector indexed by memo slot: the slot is a 32-bit number of the file, and
    // sizing a vector by it would allocate what the file merely names.
    let mut memo: HashMap<usize, Value> = HashMap::new();
    let pop = |stack: &mut Vec<Value>| stack.pop().ok_or_else(|| PickleError("stack underflow".into()));
    let pop_mark = |stack: &mut Vec<Value>, marks: &mut Vec<usize>| -> Result<Vec<Value>, PickleError> {
        let m = marks.pop().ok_or_else(|| PickleError("MARK expected".into()))?;
        if m > stack.len() {
            return err("MARK beyond the stack");
        }
        Ok(stack.split_off(m))
    };
    fn get(memo: &HashMap<usize, Value>, idx: usize) -> Result<Value, PickleError> {
        memo.get(&idx).cloned().ok_or_else(|| PickleError(format!("memo index {idx} is unset")))
    }
    fn set_items(target: &Value, items: Vec<Value>) -> Result<(), PickleError> {
        let Value::Dict(d) = target else {
            return err("SETITEM(S) on a non-dict");
        };
        if items.len() % 2 != 0 {
            return err("SETITEMS with an odd number of items");
        }
        let mut d = d.borrow_mut();
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }
    fn append(target: &Value, items: Vec<Value>) -> Result<(), PickleError> {
        match target {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            _ => err("APPEND(S) on a non-list"),
        }
    }
    loop {
        let at = r.pos;
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO
            }
            0x95 => {
                r.u64()?; // FRAME: framing is only a read-ahead hint
            }
            b'.' => return pop(&mut stack), // STOP
            b'(' => marks.push(stack.len()),
            b'}' => stack.push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
            b']' => stack.push(Value::List(Rc::new(RefCell::new(Vec::new())))),
            b')' => stack.push(Value::Tuple(Rc::new(Vec::new()))),
            b't' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(Value::Tuple(Rc::new(items)));
            }
            b'l' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(Value::List(Rc::new(RefCell::new(items))));
            }
            b'd' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                let d = Value::Dict(Rc::new(RefCell::new(Vec::new())));
                set_items(&d, items)?;
                stack.push(d);
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize; // TUPLE1..3
                if stack.len() < n {
                    return err("stack underflow in TUPLEn");
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(Rc::new(items)));
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                set_items(stack.last().ok_or_else(|| PickleError("SETITEM on empty stack".into()))?, vec![k, v])?;
            }
            b'u' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                set_items(stack.last().ok_or_else(|| PickleError("SETITEMS on empty stack".into()))?, items)?;
            }
            b'a' => {
                let v = pop(&mut stack)?;
                append(stack.last().ok_or_else(|| PickleError("APPEND on empty stack".into()))?, vec![v])?;
            }
            b'e' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                append(stack.last().ok_or_else(|| PickleError("APPENDS on empty stack".into()))?, items)?;
            }
            0x94 => {
                let v = stack.last().cloned().ok_or_else(|| PickleError("MEMOIZE on empty stack".into()))?;
                let idx = memo.len();
                memo.insert(idx, v);
            }
            b'q' | b'r' => {
                let idx = if op == b'q' { r.u8()? as usize } else { r.u32()? };
                let v = stack.last().cloned().ok_or_else(|| PickleError("PUT on empty stack".into()))?;
                memo.insert(idx, v);
            }
            b'h' => {
                let idx = r.u8()? as usize;
                stack.push(get(&memo, idx)?);
            }
            b'j' => {
                let idx = r.u32()?;
                stack.push(get(&memo, idx)?);
            }
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => {
                let b = r.take(4)?;
                stack.push(Value::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64));
            }
            b'K' => stack.push(Value::Int(r.u8()? as i64)),
            b'M' => stack.push(Value::Int(r.u16()? as i64)),
            0x8a => {
                let n = r.u8()? as usize; // LONG1: little-endian two's complement
                let b = r.take(n)?;
                if n > 8 {
                    return err("integer wider than 64 bits");
                }
                let mut v: i64 = 0;
                for (i, &byte) in b.iter().enumerate() {
                    v |= (byte as i64) << (8 * i);
                }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Value::Int(v));
            }
            b'G' => {
                let b = r.take(8)?;
                stack.push(Value::Float(f64::from_be_bytes(b.try_into().expect("8 bytes"))));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(r.utf8(n)?);
            }
            b'X' => {
                let n = r.u32()?;
                stack.push(r.utf8(n)?);
            }
            0x8d => {
                let n = r.u64()?;
                stack.push(r.utf8(n)?);
            }
            b'C' | b'U' => {
                let n = if op == b'C' { r.u8()? as usize } else { r.u32()? };
                stack.push(Value::Bytes(Rc::from(r.take(n)?)));
            }
            b'B' => {
                let n = r.u32()?;
                stack.push(Value::Bytes(Rc::from(r.take(n)?)));
            }
            0x8e => {
                let n = r.u64()?;
                stack.push(Value::Bytes(Rc::from(r.take(n)?)));
            }
            b'T' => {
                let n = r.u32()?; // BINSTRING (protocol 1 str)
                stack.push(Value::Bytes(Rc::from(r.take(n)?)));
            }
            b'c' => {
                let module = r.line()?.to_owned();
                let name = r.line()?.to_owned();
                stack.push(Value::Global(Rc::new((module, name))));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                let (Some(m), Some(n)) = (module.as_str(), name.as_str()) else {
                    return err("STACK_GLOBAL needs two strings");
                };
                stack.push(Value::Global(Rc::new((m.to_owned(), n.to_owned()))));
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                stack.push(Value::Call(Rc::new(Call { func, args, state: RefCell::new(None) })));
            }
            b'b' => {
                let state = pop(&mut stack)?;
                match stack.last() {
                    Some(Value::Call(c)) => *c.state.borrow_mut() = Some(state),
                    Some(d @ Value::Dict(_)) => {
                        let Value::Dict(s) = &state else {
                            return err("BUILD of a dict with a non-dict state");
                        };
                        let items: Vec<Value> = s.borrow().iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect();
                        set_items(d, items)?;
                    }
                    _ => return err("BUILD on a value that is not an object"),
                }
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(Value::PersistentId(Rc::new(pid)));
            }
            b'0' => {
                pop(&mut stack)?;
            }
            b'1' => {
                pop_mark(&mut stack, &mut marks)?;
            }
            b'2' => {
                let v = stack.last().cloned().ok_or_else(|| PickleError("DUP on empty stack".into()))?;
                stack.push(v);
            }
            _ => return err(format!("unsupported pickle opcode 0x{op:02x} at byte {at}")),
        }
    }
}
