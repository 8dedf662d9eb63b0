//! Metadata values: the thirteen GGUF value types, arrays (possibly nested), and typed
//! extraction used by the getters of [`crate::GgufFile`].

use std::fmt;

use crate::error::{GgufError, Result};

/// A GGUF metadata value type, with the ids used on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The type for an on-disk id, `None` if the id is not one of the thirteen.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The on-disk id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Short lower-case name: `u8`, `f32`, `bool`, `string`, `array`, ...
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Bytes one value of this type takes at least on disk (strings and arrays: their
    /// length prefix). Used to reject absurd counts before allocating.
    pub(crate) fn min_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    /// GGUF strings are UTF-8; invalid bytes in a file are replaced by U+FFFD on reading.
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A homogeneous array: every element has type `elem_type` (which may itself be `Array`,
/// with inner arrays of any one element type each).
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    elem_type: ValueType,
    values: Vec<Value>,
}

impl Array {
    /// An array of `values`, each of which must have type `elem_type`.
    pub fn new(elem_type: ValueType, values: Vec<Value>) -> Result<Array> {
        if let Some((i, v)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| v.value_type() != elem_type)
        {
            return Err(GgufError::Invalid(format!(
                "array of {elem_type}: element {i} is {}",
                v.type_name()
            )));
        }
        Ok(Array { elem_type, values })
    }

    /// Built by the reader, which checks element types as it parses.
    pub(crate) fn new_unchecked(elem_type: ValueType, values: Vec<Value>) -> Array {
        Array { elem_type, values }
    }

    /// The type of every element.
    pub fn elem_type(&self) -> ValueType {
        self.elem_type
    }

    /// The elements.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl Value {
    /// The value's GGUF type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The full type, arrays included: `u32`, `array of string`, `array of array of i32`.
    pub fn type_name(&self) -> String {
        match self {
            Value::Array(a) => match a.values.first() {
                Some(first) => format!("array of {}", first.type_name()),
                None => format!("array of {}", a.elem_type),
            },
            v => v.value_type().name().to_string(),
        }
    }

    /// An array of `values` of type `elem_type` (checked).
    pub fn array(elem_type: ValueType, values: Vec<Value>) -> Result<Value> {
        Array::new(elem_type, values).map(Value::Array)
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, if this is an array.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Any integer type, widened to u64 when it is non-negative.
    pub fn as_u64_lossless(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// Types that metadata values can be extracted as, exactly (no numeric conversion): `u32`
/// only from a `U32` value, `&str` only from a `String`, `Vec<f32>` only from an array of
/// `F32`. Used by [`crate::GgufFile::get`].
pub trait FromValue<'a>: Sized {
    /// What the caller expects, for error messages (`"u32"`, `"array of string"`).
    fn expected() -> String;
    /// The value as `Self`, if it has exactly the right type.
    fn from_value(v: &'a Value) -> Option<Self>;
}

macro_rules! scalar_value {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v)
            }
        }
        impl<'a> FromValue<'a> for $t {
            fn expected() -> String {
                ValueType::$variant.name().to_string()
            }
            fn from_value(v: &'a Value) -> Option<$t> {
                match v {
                    Value::$variant(x) => Some(x.clone()),
                    _ => None,
                }
            }
        }
        impl TypedValue for $t {
            const VALUE_TYPE: ValueType = ValueType::$variant;
        }
    )*};
}

/// Rust types with one fixed GGUF value type (lets `Vec<T>` become a typed array, even empty).
pub trait TypedValue: Into<Value> {
    /// The GGUF type values of this Rust type are stored as.
    const VALUE_TYPE: ValueType;
}

scalar_value! {
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, u64 => U64, i64 => I64, f64 => F64, String => String,
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_string())
    }
}

impl TypedValue for &str {
    const VALUE_TYPE: ValueType = ValueType::String;
}

impl From<Array> for Value {
    fn from(a: Array) -> Value {
        Value::Array(a)
    }
}

impl<T: TypedValue> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::Array(Array::new_unchecked(
            T::VALUE_TYPE,
            v.into_iter().map(Into::into).collect(),
        ))
    }
}

impl<T: TypedValue> TypedValue for Vec<T> {
    const VALUE_TYPE: ValueType = ValueType::Array;
}

impl<'a> FromValue<'a> for &'a str {
    fn expected() -> String {
        "string".into()
    }
    fn from_value(v: &'a Value) -> Option<&'a str> {
        v.as_str()
    }
}

impl<'a> FromValue<'a> for &'a Array {
    fn expected() -> String {
        "array".into()
    }
    fn from_value(v: &'a Value) -> Option<&'a Array> {
        v.as_array()
    }
}

impl<'a, T: FromValue<'a>> FromValue<'a> for Vec<T> {
    fn expected() -> String {
        format!("array of {}", T::expected())
    }
    fn from_value(v: &'a Value) -> Option<Vec<T>> {
        v.as_array()?.values.iter().map(T::from_value).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_conversions_make_typed_arrays_even_when_empty() {
        let v = Value::from(Vec::<u32>::new());
        assert_eq!(v.as_array().unwrap().elem_type(), ValueType::U32);
        let nested = Value::from(vec![vec!["a", "b"], vec!["c"]]);
        assert_eq!(nested.type_name(), "array of array of string");
        let back: Vec<Vec<&str>> = FromValue::from_value(&nested).unwrap();
        assert_eq!(back, vec![vec!["a", "b"], vec!["c"]]);
    }

    #[test]
    fn extraction_is_exact() {
        assert_eq!(u32::from_value(&Value::U32(7)), Some(7));
        assert_eq!(u32::from_value(&Value::U64(7)), None);
        assert_eq!(Value::U16(7).as_u64_lossless(), Some(7));
        assert_eq!(Value::I32(-1).as_u64_lossless(), None);
        assert_eq!(<Vec<f32>>::expected(), "array of f32");
    }

    #[test]
    fn array_new_checks_element_types() {
        let err = Array::new(ValueType::U8, vec![Value::U8(1), Value::I8(1)]).unwrap_err();
        assert!(err.to_string().contains("element 1 is i8"), "{err}");
    }
}
