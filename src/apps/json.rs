//! AMF <-> JSON at the Wasm boundary: WIT has no recursive types, so AMF values cross as JSON
//! text, which every guest language can read and write (see `wit/app.wit`).

use serde_json::{Map, Number, Value};

use crate::rtmp::amf::{Amf0Value, Amf3Value};

/// Deepest JSON accepted from a guest before it is turned into AMF (AMF decoders cap at 32).
const MAX_DEPTH: usize = 32;

pub fn amf_to_json(v: &Amf0Value) -> Value {
    match v {
        Amf0Value::Number(n) => number(*n),
        Amf0Value::Boolean(b) => Value::Bool(*b),
        Amf0Value::String(s) | Amf0Value::XmlDocument(s) => Value::String(s.clone()),
        Amf0Value::Object(props)
        | Amf0Value::EcmaArray(props)
        | Amf0Value::TypedObject {
            properties: props, ..
        } => Value::Object(
            props
                .iter()
                .map(|(k, v)| (k.clone(), amf_to_json(v)))
                .collect(),
        ),
        Amf0Value::StrictArray(items) => Value::Array(items.iter().map(amf_to_json).collect()),
        Amf0Value::Date { millis, .. } => number(*millis),
        Amf0Value::Null | Amf0Value::Undefined | Amf0Value::Unsupported => Value::Null,
        Amf0Value::Avmplus(v3) => amf3_to_json(v3),
    }
}

fn amf3_to_json(v: &Amf3Value) -> Value {
    match v {
        Amf3Value::Undefined | Amf3Value::Null => Value::Null,
        Amf3Value::Boolean(b) => Value::Bool(*b),
        Amf3Value::Integer(i) => Value::from(*i),
        Amf3Value::Double(d) | Amf3Value::Date(d) => number(*d),
        Amf3Value::String(s) | Amf3Value::XmlDocument(s) | Amf3Value::Xml(s) => {
            Value::String(s.clone())
        }
        Amf3Value::Array { assoc, dense } if assoc.is_empty() => {
            Value::Array(dense.iter().map(amf3_to_json).collect())
        }
        Amf3Value::Array { assoc, dense } => {
            let mut m: Map<String, Value> = dense
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), amf3_to_json(v)))
                .collect();
            m.extend(assoc.iter().map(|(k, v)| (k.clone(), amf3_to_json(v))));
            Value::Object(m)
        }
        Amf3Value::Object {
            sealed, dynamic, ..
        } => Value::Object(
            sealed
                .iter()
                .chain(dynamic.iter().flatten())
                .map(|(k, v)| (k.clone(), amf3_to_json(v)))
                .collect(),
        ),
        Amf3Value::ByteArray(b) => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
        // Vectors and dictionaries are rare in commands; they cross as null.
        _ => Value::Null,
    }
}

fn number(n: f64) -> Value {
    Number::from_f64(n)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A JSON array of arguments from AMF values.
pub fn args_to_json(args: &[Amf0Value]) -> String {
    Value::Array(args.iter().map(amf_to_json).collect()).to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("invalid JSON from the app: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("JSON from the app is nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("expected a JSON array of arguments")]
    NotArray,
}

pub fn json_to_amf(v: &Value) -> Result<Amf0Value, JsonError> {
    convert(v, 0)
}

fn convert(v: &Value, depth: usize) -> Result<Amf0Value, JsonError> {
    if depth > MAX_DEPTH {
        return Err(JsonError::TooDeep);
    }
    Ok(match v {
        Value::Null => Amf0Value::Null,
        Value::Bool(b) => Amf0Value::Boolean(*b),
        Value::Number(n) => Amf0Value::Number(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Amf0Value::String(s.clone()),
        Value::Array(items) => Amf0Value::StrictArray(
            items
                .iter()
                .map(|i| convert(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Amf0Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), convert(v, depth + 1)?)))
                .collect::<Result<_, JsonError>>()?,
        ),
    })
}

/// Parses a JSON value from a guest into AMF.
pub fn parse_value(text: &str) -> Result<Amf0Value, JsonError> {
    json_to_amf(&serde_json::from_str(text)?)
}

/// Parses a JSON array of arguments from a guest into AMF values.
pub fn parse_args(text: &str) -> Result<Vec<Amf0Value>, JsonError> {
    match serde_json::from_str::<Value>(text)? {
        Value::Array(items) => items.iter().map(json_to_amf).collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(JsonError::NotArray),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = Amf0Value::object([
            ("a", Amf0Value::Number(1.5)),
            ("b", Amf0Value::string("x")),
            (
                "c",
                Amf0Value::StrictArray(vec![Amf0Value::Boolean(true), Amf0Value::Null]),
            ),
        ]);
        let j = amf_to_json(&v);
        assert_eq!(
            j,
            serde_json::json!({"a": 1.5, "b": "x", "c": [true, null]})
        );
        assert_eq!(json_to_amf(&j).unwrap(), v);
    }

    #[test]
    fn lossy_forms() {
        assert_eq!(amf_to_json(&Amf0Value::Undefined), Value::Null);
        assert_eq!(amf_to_json(&Amf0Value::Number(f64::NAN)), Value::Null);
        assert_eq!(
            amf_to_json(&Amf0Value::EcmaArray(vec![(
                "k".into(),
                Amf0Value::Number(2.0)
            )])),
            serde_json::json!({"k": 2.0})
        );
    }

    #[test]
    fn bad_json() {
        assert!(parse_args("{").is_err());
        assert!(matches!(parse_args("1"), Err(JsonError::NotArray)));
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(matches!(parse_args(&deep), Err(JsonError::TooDeep)));
        assert_eq!(parse_args("[1,\"a\"]").unwrap().len(), 2);
    }
}
