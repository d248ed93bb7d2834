//! Scan planning on the wire: the request, and content files in the spec's
//! JSON (`DataFile`, `PositionDeleteFile`, `EqualityDeleteFile`) with
//! partition values and bounds in the single-value forms of the spec.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, NaiveTime};
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, Datum, Literal, PrimitiveLiteral, PrimitiveType,
    StructType, Type,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// `PlanTableScanRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PlanRequest {
    /// Point-in-time scan of this snapshot.
    pub snapshot_id: Option<i64>,
    /// Selected field names (checked; planning returns whole files).
    pub select: Option<Vec<String>>,
    /// Row filter, in the spec's expression JSON.
    pub filter: Option<Value>,
    /// Hint only.
    pub min_rows_requested: Option<i64>,
    /// Field matching of `filter`, `select` and `stats-fields`.
    #[serde(default = "yes")]
    pub case_sensitive: bool,
    /// Bind to the snapshot's schema rather than the table's.
    #[serde(default)]
    pub use_snapshot_schema: bool,
    /// Incremental scan: after this snapshot (exclusive).
    pub start_snapshot_id: Option<i64>,
    /// Incremental scan: up to this snapshot (inclusive).
    pub end_snapshot_id: Option<i64>,
    /// Fields whose column statistics are returned.
    pub stats_fields: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

/// `FetchScanTasksRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct FetchTasksRequest {
    /// A plan task from a planning result.
    #[serde(rename = "plan-task")]
    pub plan_task: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn decimal_string(mantissa: i128, scale: u32) -> String {
    let negative = mantissa < 0;
    let digits = mantissa.unsigned_abs().to_string();
    let scale = scale as usize;
    let text = if scale == 0 {
        digits
    } else if digits.len() > scale {
        format!(
            "{}.{}",
            &digits[..digits.len() - scale],
            &digits[digits.len() - scale..]
        )
    } else {
        format!("0.{digits:0>scale$}")
    };
    if negative { format!("-{text}") } else { text }
}

/// One value in the spec's `PrimitiveTypeValue` form.
pub fn value_json(literal: &PrimitiveLiteral, r#type: &PrimitiveType) -> Value {
    use PrimitiveLiteral as L;
    use PrimitiveType as T;
    match (literal, r#type) {
        (L::Boolean(b), _) => json!(b),
        (L::Int(days), T::Date) => NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(i64::from(*days))))
            .map_or(json!(days), |d| json!(d.format("%Y-%m-%d").to_string())),
        (L::Int(i), _) => json!(i),
        (L::Long(micros), T::Time) => {
            let secs = micros.div_euclid(1_000_000) as u32;
            let nanos = (micros.rem_euclid(1_000_000) * 1000) as u32;
            NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos).map_or(json!(micros), |t| {
                json!(t.format("%H:%M:%S%.6f").to_string())
            })
        }
        (L::Long(micros), T::Timestamp | T::Timestamptz) => {
            DateTime::from_timestamp_micros(*micros).map_or(json!(micros), |t| {
                let text = t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
                if *r#type == T::Timestamptz {
                    json!(format!("{text}+00:00"))
                } else {
                    json!(text)
                }
            })
        }
        (L::Long(nanos), T::TimestampNs | T::TimestamptzNs) => {
            let t = DateTime::from_timestamp_nanos(*nanos);
            let text = t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
            if *r#type == T::TimestamptzNs {
                json!(format!("{text}+00:00"))
            } else {
                json!(text)
            }
        }
        (L::Long(l), _) => json!(l),
        (L::Float(f), _) => json!(f.0),
        (L::Double(d), _) => json!(d.0),
        (L::String(s), _) => json!(s),
        (L::Binary(b), _) => json!(hex(b)),
        (L::Int128(m), T::Decimal { scale, .. }) => json!(decimal_string(*m, *scale)),
        (L::Int128(i), _) => json!(i.to_string()),
        (L::UInt128(u), T::Uuid) => json!(uuid::Uuid::from_u128(*u).to_string()),
        (L::UInt128(u), _) => json!(u.to_string()),
        (L::AboveMax | L::BelowMin, _) => Value::Null,
    }
}

fn datum_json(datum: &Datum) -> Value {
    value_json(datum.literal(), datum.data_type())
}

fn content(file: &DataFile) -> &'static str {
    match file.content_type() {
        DataContentType::Data => "data",
        DataContentType::PositionDeletes => "position-deletes",
        DataContentType::EqualityDeletes => "equality-deletes",
    }
}

fn format_name(format: DataFileFormat) -> &'static str {
    match format {
        DataFileFormat::Avro => "avro",
        DataFileFormat::Orc => "orc",
        DataFileFormat::Parquet => "parquet",
        DataFileFormat::Puffin => "puffin",
    }
}

fn count_map(map: &HashMap<i32, u64>, keep: &HashSet<i32>) -> Option<Value> {
    let sorted: BTreeMap<i32, u64> = map
        .iter()
        .filter(|(k, _)| keep.contains(k))
        .map(|(k, v)| (*k, *v))
        .collect();
    (!sorted.is_empty()).then(|| {
        json!({"keys": sorted.keys().collect::<Vec<_>>(), "values": sorted.values().collect::<Vec<_>>()})
    })
}

fn value_map(map: &HashMap<i32, Datum>, keep: &HashSet<i32>) -> Option<Value> {
    let sorted: BTreeMap<i32, &Datum> = map
        .iter()
        .filter(|(k, _)| keep.contains(k))
        .map(|(k, v)| (*k, v))
        .collect();
    (!sorted.is_empty()).then(|| {
        json!({
            "keys": sorted.keys().collect::<Vec<_>>(),
            "values": sorted.values().map(|d| datum_json(d)).collect::<Vec<_>>(),
        })
    })
}

/// A content file as the spec writes it; column statistics only for the
/// field ids in `stats`.
pub fn content_file_json(
    file: &DataFile,
    spec_id: i32,
    partition_type: &StructType,
    stats: &HashSet<i32>,
) -> Value {
    let partition: Vec<Value> = file
        .partition()
        .iter()
        .zip(partition_type.fields())
        .map(|(value, field)| match (value, field.field_type.as_ref()) {
            (Some(Literal::Primitive(p)), Type::Primitive(t)) => value_json(p, t),
            _ => Value::Null,
        })
        .collect();
    let mut out = json!({
        "content": content(file),
        "file-path": file.file_path(),
        "file-format": format_name(file.file_format()),
        "spec-id": spec_id,
        "partition": partition,
        "file-size-in-bytes": file.file_size_in_bytes(),
        "record-count": file.record_count(),
    });
    let Value::Object(map) = &mut out else {
        return out;
    };
    if let Some(key) = file.key_metadata() {
        map.insert("key-metadata".into(), json!(hex(key)));
    }
    if let Some(offsets) = file.split_offsets() {
        map.insert("split-offsets".into(), json!(offsets));
    }
    if let Some(order) = file.sort_order_id() {
        map.insert("sort-order-id".into(), json!(order));
    }
    match file.content_type() {
        DataContentType::Data => {
            if let Some(first) = file.first_row_id() {
                map.insert("first-row-id".into(), json!(first));
            }
            for (key, value) in [
                ("column-sizes", count_map(file.column_sizes(), stats)),
                ("value-counts", count_map(file.value_counts(), stats)),
                (
                    "null-value-counts",
                    count_map(file.null_value_counts(), stats),
                ),
                (
                    "nan-value-counts",
                    count_map(file.nan_value_counts(), stats),
                ),
                ("lower-bounds", value_map(file.lower_bounds(), stats)),
                ("upper-bounds", value_map(file.upper_bounds(), stats)),
            ] {
                if let Some(value) = value {
                    map.insert(key.into(), value);
                }
            }
        }
        DataContentType::PositionDeletes => {
            if let Some(referenced) = file.referenced_data_file() {
                map.insert("referenced-data-file".into(), json!(referenced));
            }
            if let Some(offset) = file.content_offset() {
                map.insert("content-offset".into(), json!(offset));
            }
            if let Some(size) = file.content_size_in_bytes() {
                map.insert("content-size-in-bytes".into(), json!(size));
            }
        }
        DataContentType::EqualityDeletes => {
            if let Some(ids) = file.equality_ids() {
                map.insert("equality-ids".into(), json!(ids));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(v: f32) -> PrimitiveLiteral {
        Datum::float(v).literal().clone()
    }

    fn double(v: f64) -> PrimitiveLiteral {
        Datum::double(v).literal().clone()
    }

    #[test]
    fn values_take_the_spec_forms() {
        use PrimitiveLiteral as L;
        use PrimitiveType as T;
        let cases: Vec<(L, T, Value)> = vec![
            (L::Boolean(true), T::Boolean, json!(true)),
            (L::Int(42), T::Int, json!(42)),
            (L::Long(9), T::Long, json!(9)),
            (float(1.5), T::Float, json!(1.5)),
            (double(2.25), T::Double, json!(2.25)),
            (L::String("x".into()), T::String, json!("x")),
            (L::Int(13_850), T::Date, json!("2007-12-03")),
            (L::Long(81_068_123_456), T::Time, json!("22:31:08.123456")),
            (
                L::Long(1_196_676_930_123_456),
                T::Timestamp,
                json!("2007-12-03T10:15:30.123456"),
            ),
            (
                L::Long(1_196_676_930_123_456),
                T::Timestamptz,
                json!("2007-12-03T10:15:30.123456+00:00"),
            ),
            (
                L::Long(1_196_676_930_123_456_789),
                T::TimestampNs,
                json!("2007-12-03T10:15:30.123456789"),
            ),
            (
                L::Int128(1_234_500),
                T::Decimal {
                    precision: 9,
                    scale: 4,
                },
                json!("123.4500"),
            ),
            (
                L::Int128(-5),
                T::Decimal {
                    precision: 9,
                    scale: 2,
                },
                json!("-0.05"),
            ),
            (L::Binary(b"xyz".to_vec()), T::Binary, json!("78797A")),
            (
                L::UInt128(
                    uuid::Uuid::parse_str("eb26bdb1-a1d8-4aa6-990e-da940875492c")
                        .unwrap()
                        .as_u128(),
                ),
                T::Uuid,
                json!("eb26bdb1-a1d8-4aa6-990e-da940875492c"),
            ),
        ];
        for (literal, t, want) in cases {
            assert_eq!(value_json(&literal, &t), want, "{literal:?} as {t}");
        }
    }
}
