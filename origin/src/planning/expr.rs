//! The spec's JSON expressions (`Predicate`) as `iceberg` predicates.
//!
//! Both forms are read: the current one (`child`, `left`/`right`,
//! `{"type": "reference", ...}` terms) and the deprecated one still sent by
//! PyIceberg and Java (`term` as a field name, `value`). Field names are
//! resolved against the schema here, with or without case, so the
//! predicate the `iceberg` crate binds carries the schema's own spelling;
//! literals are converted to the field's type.

use iceberg::expr::{Predicate, Reference};
use iceberg::spec::{Datum, PrimitiveType, Schema, Type};
use serde_json::Value;

/// A field a predicate refers to: its name as the schema spells it and its type.
struct Field {
    name: String,
    r#type: PrimitiveType,
}

/// Why a filter expression was refused; its text is the reason given in
/// the 400.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Nesting beyond [`MAX_DEPTH`].
    #[error("filter is nested too deeply")]
    TooDeep,
    /// Neither a boolean nor an object.
    #[error("not a predicate: {0}")]
    NotAPredicate(Value),
    /// An object without a string `type`.
    #[error("predicate without a string \"type\"")]
    Untyped,
    /// A `type` this parser does not know.
    #[error("unknown predicate type {0:?}")]
    UnknownType(String),
    /// A predicate without one of its parts (`left`, `child`, a value…).
    #[error("{kind} predicate without {part}")]
    Missing {
        /// The predicate's type.
        kind: String,
        /// What it lacks, as the message names it.
        part: String,
    },
    /// An operator applied to a field of a type it does not take.
    #[error("{kind} needs a {needs} field, not {field}")]
    WrongFieldType {
        /// The predicate's type.
        kind: String,
        /// The types it takes.
        needs: &'static str,
        /// The field as the schema spells it.
        field: String,
    },
    /// No term under any of the keys a predicate of this type takes.
    #[error("predicate without a term ({0})")]
    NoTerm(String),
    /// A term that is neither a field name nor a reference object.
    #[error("not a term: {0}")]
    NotATerm(Value),
    /// A term object without a `type`.
    #[error("term without a type")]
    UntypedTerm,
    /// A term other than a reference (a transform, a function).
    #[error("terms of type {0:?} (transforms, functions) are not supported in scan filters")]
    UnsupportedTerm(String),
    /// A reference with neither a name nor an id.
    #[error("reference without a name or an id")]
    UnnamedReference,
    /// A reference id that is not a 32-bit integer.
    #[error("reference id is not a field id")]
    BadReferenceId,
    /// A reference id the schema does not have.
    #[error("no field with id {0}")]
    NoFieldId(i32),
    /// A field name the schema does not have (with or without case).
    #[error("no field named {0:?} in the table schema")]
    NoSuchField(String),
    /// A struct, list or map field where a primitive one is needed.
    #[error("{0} is not a primitive field")]
    NotPrimitive(String),
    /// A literal that is not a value of the field's type.
    #[error("{value} is not a {expected} literal for {field}")]
    BadLiteral {
        /// The literal as sent.
        value: Value,
        /// The field's type.
        expected: PrimitiveType,
        /// The field as the schema spells it.
        field: String,
        /// The `iceberg` crate's refusal, when it made one.
        #[source]
        cause: Option<Box<iceberg::Error>>,
    },
}

/// Parses a predicate; errors are reasons for a 400.
pub fn parse(
    value: &Value,
    schema: &Schema,
    case_sensitive: bool,
) -> Result<Predicate, FilterError> {
    Parser {
        schema,
        case_sensitive,
    }
    .predicate(value, 0)
}

struct Parser<'a> {
    schema: &'a Schema,
    case_sensitive: bool,
}

/// A predicate of type `kind` lacks `part`.
fn missing(kind: &str, part: String) -> FilterError {
    FilterError::Missing {
        kind: kind.to_string(),
        part,
    }
}

/// Nesting beyond this is refused (a request cannot make the parser recurse without bound).
const MAX_DEPTH: usize = 256;

impl Parser<'_> {
    fn predicate(&self, value: &Value, depth: usize) -> Result<Predicate, FilterError> {
        if depth > MAX_DEPTH {
            return Err(FilterError::TooDeep);
        }
        let object = match value {
            Value::Bool(true) => return Ok(Predicate::AlwaysTrue),
            Value::Bool(false) => return Ok(Predicate::AlwaysFalse),
            Value::Object(object) => object,
            other => return Err(FilterError::NotAPredicate(other.clone())),
        };
        let kind = object
            .get("type")
            .and_then(Value::as_str)
            .ok_or(FilterError::Untyped)?;
        let child = |key: &str| {
            object
                .get(key)
                .ok_or_else(|| missing(kind, format!("\"{key}\"")))
                .and_then(|v| self.predicate(v, depth + 1))
        };
        match kind {
            "true" => Ok(Predicate::AlwaysTrue),
            "false" => Ok(Predicate::AlwaysFalse),
            "and" => Ok(child("left")?.and(child("right")?)),
            "or" => Ok(child("left")?.or(child("right")?)),
            "not" => Ok(!child("child")?),
            leaf => self.leaf(leaf, object),
        }
    }

    /// A predicate on one field. Kept out of [`Parser::predicate`] so the
    /// frame each level of nesting costs stays small.
    #[inline(never)]
    fn leaf(
        &self,
        kind: &str,
        object: &serde_json::Map<String, Value>,
    ) -> Result<Predicate, FilterError> {
        match kind {
            "is-null" | "not-null" | "is-nan" | "not-nan" => {
                let field = self.operand(object, &["child", "term"])?;
                let reference = Reference::new(field.name.clone());
                let floating = matches!(field.r#type, PrimitiveType::Float | PrimitiveType::Double);
                match kind {
                    "is-null" => Ok(reference.is_null()),
                    "not-null" => Ok(reference.is_not_null()),
                    _ if !floating => Err(FilterError::WrongFieldType {
                        kind: kind.to_string(),
                        needs: "float or double",
                        field: field.name,
                    }),
                    "is-nan" => Ok(reference.is_nan()),
                    _ => Ok(reference.is_not_nan()),
                }
            }
            "lt" | "lt-eq" | "gt" | "gt-eq" | "eq" | "not-eq" | "starts-with"
            | "not-starts-with" => {
                let field = self.operand(object, &["left", "term"])?;
                let literal = object
                    .get("right")
                    .or_else(|| object.get("value"))
                    .ok_or_else(|| missing(kind, "a value".to_string()))?;
                let datum = literal_datum(literal, &field)?;
                let reference = Reference::new(field.name.clone());
                if matches!(kind, "starts-with" | "not-starts-with")
                    && field.r#type != PrimitiveType::String
                {
                    return Err(FilterError::WrongFieldType {
                        kind: kind.to_string(),
                        needs: "string",
                        field: field.name,
                    });
                }
                Ok(match kind {
                    "lt" => reference.less_than(datum),
                    "lt-eq" => reference.less_than_or_equal_to(datum),
                    "gt" => reference.greater_than(datum),
                    "gt-eq" => reference.greater_than_or_equal_to(datum),
                    "eq" => reference.equal_to(datum),
                    "not-eq" => reference.not_equal_to(datum),
                    "starts-with" => reference.starts_with(datum),
                    _ => reference.not_starts_with(datum),
                })
            }
            "in" | "not-in" => {
                let field = self.operand(object, &["child", "term"])?;
                let values = object
                    .get("values")
                    .and_then(Value::as_array)
                    .ok_or_else(|| missing(kind, "a \"values\" array".to_string()))?;
                let datums = values
                    .iter()
                    .map(|v| literal_datum(v, &field))
                    .collect::<Result<Vec<_>, _>>()?;
                let reference = Reference::new(field.name.clone());
                Ok(if kind == "in" {
                    reference.is_in(datums)
                } else {
                    reference.is_not_in(datums)
                })
            }
            other => Err(FilterError::UnknownType(other.to_string())),
        }
    }

    /// The field a predicate tests, from the first of `keys` present.
    fn operand(
        &self,
        object: &serde_json::Map<String, Value>,
        keys: &[&str],
    ) -> Result<Field, FilterError> {
        let term = keys
            .iter()
            .find_map(|k| object.get(*k))
            .ok_or_else(|| FilterError::NoTerm(keys.join(" or ")))?;
        let field = match term {
            Value::String(name) => self.by_name(name)?,
            Value::Object(reference) => match reference.get("type").and_then(Value::as_str) {
                Some("reference") => match (reference.get("name"), reference.get("id")) {
                    (Some(Value::String(name)), _) => self.by_name(name)?,
                    (_, Some(id)) => {
                        let id = id
                            .as_i64()
                            .and_then(|i| i32::try_from(i).ok())
                            .ok_or(FilterError::BadReferenceId)?;
                        self.schema
                            .field_by_id(id)
                            .ok_or(FilterError::NoFieldId(id))?;
                        let name = self
                            .schema
                            .name_by_field_id(id)
                            .ok_or(FilterError::NoFieldId(id))?
                            .to_string();
                        self.by_name(&name)?
                    }
                    _ => return Err(FilterError::UnnamedReference),
                },
                Some(other) => {
                    return Err(FilterError::UnsupportedTerm(other.to_string()));
                }
                None => return Err(FilterError::UntypedTerm),
            },
            other => return Err(FilterError::NotATerm(other.clone())),
        };
        Ok(field)
    }

    fn by_name(&self, name: &str) -> Result<Field, FilterError> {
        let field = if self.case_sensitive {
            self.schema.field_by_name(name)
        } else {
            self.schema.field_by_name_case_insensitive(name)
        }
        .ok_or_else(|| FilterError::NoSuchField(name.to_string()))?;
        let Type::Primitive(r#type) = field.field_type.as_ref() else {
            return Err(FilterError::NotPrimitive(name.to_string()));
        };
        let canonical = self
            .schema
            .name_by_field_id(field.id)
            .unwrap_or(name)
            .to_string();
        Ok(Field {
            name: canonical,
            r#type: r#type.clone(),
        })
    }
}

/// A JSON literal as a datum of the field's type (the spec's single-value
/// forms: numbers, ISO-8601 strings for dates and times, decimal strings,
/// hex for binary, and for temporal types their integer encodings too).
fn literal_datum(value: &Value, field: &Field) -> Result<Datum, FilterError> {
    let refused = |cause: Option<Box<iceberg::Error>>| FilterError::BadLiteral {
        value: value.clone(),
        expected: field.r#type.clone(),
        field: field.name.clone(),
        cause,
    };
    let wrong = || refused(None);
    let because = |e: iceberg::Error| refused(Some(Box::new(e)));
    let value = match value {
        // A typed literal object, as some writers send it.
        Value::Object(o) if o.contains_key("value") => o.get("value").unwrap_or(&Value::Null),
        other => other,
    };
    let int = || value.as_i64().ok_or_else(wrong);
    let text = || value.as_str().ok_or_else(wrong);
    let datum = match &field.r#type {
        PrimitiveType::Boolean => match value {
            Value::Bool(b) => Datum::bool(*b),
            Value::String(s) => Datum::bool_from_str(s).map_err(because)?,
            _ => return Err(wrong()),
        },
        PrimitiveType::Int => Datum::int(i32::try_from(int()?).map_err(|_| wrong())?),
        PrimitiveType::Long => Datum::long(int()?),
        PrimitiveType::Float => Datum::float(value.as_f64().ok_or_else(wrong)? as f32),
        PrimitiveType::Double => Datum::double(value.as_f64().ok_or_else(wrong)?),
        PrimitiveType::String => Datum::string(text()?),
        PrimitiveType::Uuid => Datum::uuid_from_str(text()?).map_err(because)?,
        PrimitiveType::Date => match value {
            Value::Number(_) => Datum::date(i32::try_from(int()?).map_err(|_| wrong())?),
            _ => Datum::date_from_str(text()?).map_err(because)?,
        },
        PrimitiveType::Time => match value {
            Value::Number(_) => Datum::time_micros(int()?).map_err(because)?,
            _ => Datum::time_from_str(text()?).map_err(because)?,
        },
        PrimitiveType::Timestamp => match value {
            Value::Number(_) => Datum::timestamp_micros(int()?),
            _ => Datum::timestamp_from_str(text()?).map_err(because)?,
        },
        PrimitiveType::Timestamptz => match value {
            Value::Number(_) => Datum::timestamptz_micros(int()?),
            _ => Datum::timestamptz_from_str(zoned(text()?)).map_err(because)?,
        },
        PrimitiveType::TimestampNs => Datum::timestamp_nanos(int()?),
        PrimitiveType::TimestamptzNs => Datum::timestamptz_nanos(int()?),
        PrimitiveType::Decimal { scale, .. } => {
            let text = match value {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(wrong()),
            };
            let exact = rescale(&text, *scale).ok_or_else(wrong)?;
            Datum::decimal_from_str(exact)
                .and_then(|d| d.to(&Type::Primitive(field.r#type.clone())))
                .map_err(because)?
        }
        PrimitiveType::Fixed(len) => {
            let bytes = unhex(text()?).ok_or_else(wrong)?;
            if bytes.len() as u64 != *len {
                return Err(wrong());
            }
            Datum::fixed(bytes)
        }
        PrimitiveType::Binary => Datum::binary(unhex(text()?).ok_or_else(wrong)?),
    };
    Ok(datum)
}

/// A timestamptz string gets `+00:00` when it has no zone.
fn zoned(text: &str) -> String {
    let has_zone = text.ends_with('Z')
        || text
            .rfind(['+', '-'])
            .is_some_and(|i| i > 10 && text[i..].contains(':'));
    if has_zone {
        text.to_string()
    } else {
        format!("{text}+00:00")
    }
}

/// `text` written with exactly `scale` fraction digits; `None` when it has
/// more (a literal the column cannot hold).
fn rescale(text: &str, scale: u32) -> Option<String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if !fraction.chars().all(|c| c.is_ascii_digit()) || whole.is_empty() {
        return None;
    }
    let trimmed = fraction.trim_end_matches('0');
    if trimmed.len() > scale as usize {
        return None;
    }
    if scale == 0 {
        return Some(whole.to_string());
    }
    Some(format!(
        "{whole}.{trimmed:0<width$}",
        width = scale as usize
    ))
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{NestedField, StructType};
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "ts", Type::Primitive(PrimitiveType::Timestamp)).into(),
                NestedField::optional(3, "Category", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(4, "value", Type::Primitive(PrimitiveType::Double)).into(),
                NestedField::optional(5, "day", Type::Primitive(PrimitiveType::Date)).into(),
                NestedField::optional(
                    6,
                    "price",
                    Type::Primitive(PrimitiveType::Decimal {
                        precision: 9,
                        scale: 2,
                    }),
                )
                .into(),
                NestedField::optional(
                    7,
                    "nested",
                    Type::Struct(StructType::new(vec![
                        NestedField::optional(8, "leaf", Type::Primitive(PrimitiveType::Int))
                            .into(),
                    ])),
                )
                .into(),
            ])
            .build()
            .unwrap()
    }

    fn ok(v: Value) -> String {
        parse(&v, &schema(), true)
            .unwrap_or_else(|e| panic!("{v}: {e}"))
            .to_string()
    }

    fn err(v: Value) -> String {
        parse(&v, &schema(), true)
            .expect_err(&v.to_string())
            .to_string()
    }

    #[test]
    fn legacy_and_current_forms_mean_the_same() {
        let legacy = ok(json!({"type": "eq", "term": "id", "value": 5}));
        let current =
            ok(json!({"type": "eq", "left": {"type": "reference", "name": "id"}, "right": 5}));
        let by_id = ok(json!({"type": "eq", "left": {"type": "reference", "id": 1}, "right": 5}));
        assert_eq!(legacy, current);
        assert_eq!(legacy, by_id);
        assert!(legacy.contains("id") && legacy.contains('5'), "{legacy}");
    }

    #[test]
    fn every_operator_parses() {
        for kind in ["lt", "lt-eq", "gt", "gt-eq", "eq", "not-eq"] {
            ok(json!({"type": kind, "term": "ts", "value": "2024-03-01T00:00:00"}));
        }
        ok(json!({"type": "starts-with", "term": "Category", "value": "a"}));
        ok(json!({"type": "not-starts-with", "term": "Category", "value": "a"}));
        for kind in ["is-null", "not-null"] {
            ok(json!({"type": kind, "term": "Category"}));
        }
        ok(json!({"type": "is-nan", "child": {"type": "reference", "name": "value"}}));
        ok(json!({"type": "not-nan", "term": "value"}));
        ok(json!({"type": "in", "term": "Category", "values": ["a", "b"]}));
        ok(json!({"type": "not-in", "term": "id", "values": [1, 2]}));
        ok(json!({"type": "not", "child": {"type": "and",
            "left": {"type": "gt", "term": "day", "value": "2024-03-01"},
            "right": {"type": "or", "left": true, "right": {"type": "false"}}}}));
        ok(json!({"type": "eq", "term": "price", "value": "12.5"}));
        ok(json!({"type": "lt", "term": "nested.leaf", "value": 3}));
        assert_eq!(ok(json!(true)), Predicate::AlwaysTrue.to_string());
    }

    #[test]
    fn names_respect_case_sensitivity() {
        assert!(err(json!({"type": "eq", "term": "category", "value": "a"})).contains("category"));
        let insensitive = parse(
            &json!({"type": "eq", "term": "CATEGORY", "value": "a"}),
            &schema(),
            false,
        )
        .unwrap()
        .to_string();
        assert!(
            insensitive.contains("Category"),
            "the schema's spelling: {insensitive}"
        );
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        for v in [
            json!(5),
            json!({"term": "id"}),
            json!({"type": "eq", "term": "nope", "value": 1}),
            json!({"type": "eq", "term": "id", "value": "x"}),
            json!({"type": "eq", "term": "id"}),
            json!({"type": "eq", "term": "nested", "value": 1}),
            json!({"type": "is-nan", "term": "id"}),
            json!({"type": "starts-with", "term": "id", "value": 1}),
            json!({"type": "in", "term": "id", "values": 3}),
            json!({"type": "eq", "term": "price", "value": "1.234"}),
            json!({"type": "eq", "left": {"type": "transform", "transform": "day", "term": "ts"}, "right": 1}),
            json!({"type": "and", "left": true}),
            json!({"type": "between", "term": "id", "value": 1}),
            json!({"type": "eq", "left": {"type": "reference", "id": 99}, "right": 1}),
        ] {
            let message = err(v.clone());
            assert!(!message.is_empty(), "{v}");
        }
        let mut deep = json!(true);
        for _ in 0..1000 {
            deep = json!({"type": "not", "child": deep});
        }
        assert!(err(deep).contains("deeply"));
    }

    #[test]
    fn refusals_name_their_kind_and_keep_the_cause() {
        let schema = schema();
        let refusal = |v: Value| parse(&v, &schema, true).expect_err(&v.to_string());
        let unknown = refusal(json!({"type": "eq", "term": "nope", "value": 1}));
        assert!(
            matches!(&unknown, FilterError::NoSuchField(name) if name == "nope"),
            "{unknown:?}"
        );
        let bad_day = refusal(json!({"type": "eq", "term": "day", "value": "yesterday"}));
        assert!(
            matches!(bad_day, FilterError::BadLiteral { cause: Some(_), .. }),
            "{bad_day:?}"
        );
        assert!(std::error::Error::source(&bad_day).is_some());
        assert_eq!(
            bad_day.to_string(),
            "\"yesterday\" is not a date literal for day"
        );
        let missing = refusal(json!({"type": "and", "left": true}));
        assert_eq!(missing.to_string(), "and predicate without \"right\"");
    }

    #[test]
    fn decimals_and_zones() {
        assert_eq!(rescale("12.5", 2).as_deref(), Some("12.50"));
        assert_eq!(rescale("12", 2).as_deref(), Some("12.00"));
        assert_eq!(rescale("12.500", 2).as_deref(), Some("12.50"));
        assert_eq!(rescale("12.345", 2), None);
        assert_eq!(zoned("2024-03-01T00:00:00"), "2024-03-01T00:00:00+00:00");
        assert_eq!(
            zoned("2024-03-01T00:00:00-05:00"),
            "2024-03-01T00:00:00-05:00"
        );
        assert_eq!(unhex("78797A"), Some(b"xyz".to_vec()));
        assert_eq!(unhex("7"), None);
    }
}
