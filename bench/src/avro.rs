//! Avro records for the Avro sink's measurement: randomuser-shaped users
//! encoded as a Confluent producer would (a zero byte, the schema id, the
//! datum), with their schema registered in the world's Schema Registry.
//!
//! The schema follows the JSON records field by field (objects as nested
//! records), each scalar a union of the JSON scalar types, since the API's
//! `postcode` is a number or a string; so the sink maps these records with
//! the very pipeline the JSON sink runs.

use anyhow::{Context, bail};
use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use serde_json::{Value, json};

/// The union every scalar field has, in this order.
const SCALAR: [&str; 5] = ["null", "boolean", "long", "double", "string"];

/// The Avro schema (as JSON) of records shaped like `sample`.
pub fn schema_of(sample: &Value, name: &str) -> Value {
    let Value::Object(fields) = sample else {
        return json!(SCALAR);
    };
    let fields: Vec<Value> = fields
        .iter()
        .map(|(k, v)| {
            let nested = format!("{name}_{k}");
            json!({"name": k, "type": schema_of(v, &nested), "default": null})
        })
        .map(|mut f| {
            // A record field has no null default; a scalar's is null.
            if f["type"].is_object()
                && let Some(o) = f.as_object_mut()
            {
                o.remove("default");
            }
            f
        })
        .collect();
    json!({"type": "record", "name": name, "fields": fields})
}

/// `value` as the Avro value of `schema` (from [`schema_of`]).
pub fn to_avro(value: &Value, schema: &Schema) -> anyhow::Result<Avro> {
    match schema {
        Schema::Record(record) => {
            let mut fields = Vec::with_capacity(record.fields.len());
            for field in &record.fields {
                let v = value.get(&field.name).unwrap_or(&Value::Null);
                fields.push((field.name.clone(), to_avro(v, &field.schema)?));
            }
            Ok(Avro::Record(fields))
        }
        Schema::Union(_) => {
            let (branch, v) = match value {
                Value::Null => (0, Avro::Null),
                Value::Bool(b) => (1, Avro::Boolean(*b)),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => (2, Avro::Long(i)),
                    None => (3, Avro::Double(n.as_f64().context("a number")?)),
                },
                Value::String(s) => (4, Avro::String(s.clone())),
                other => bail!("{other} is not a scalar"),
            };
            Ok(Avro::Union(branch, Box::new(v)))
        }
        other => bail!("unexpected schema {other:?}"),
    }
}

/// Registers `schema` under `subject` (`POST {url}/subjects/{subject}/versions`)
/// and returns its id.
pub async fn register(url: &str, subject: &str, schema: &Value) -> anyhow::Result<u32> {
    let answer: Value = reqwest::Client::new()
        .post(format!(
            "{}/subjects/{subject}/versions",
            url.trim_end_matches('/')
        ))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .json(&json!({ "schema": schema.to_string() }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = answer["id"]
        .as_u64()
        .context("the registry's answer has no id")?;
    Ok(u32::try_from(id)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::users::Users;
    use millrace_api::RowMapper;
    use millrace_api::avro::{WriterSchema, split_wire, wire};

    #[test]
    fn avro_users_map_to_the_rows_their_json_maps_to() {
        let mut users = Users::new(3);
        let schema_json = schema_of(&users.next_user(), "User");
        let schema = Schema::parse_str(&schema_json.to_string()).unwrap();
        let writer = WriterSchema::parse(&schema_json.to_string()).unwrap();
        let mapper = RowMapper::new(&crate::example_table("ks", "t").unwrap()).unwrap();
        for _ in 0..200 {
            let user = users.next_user();
            let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
                .build()
                .unwrap()
                .write_value_to_vec(to_avro(&user, &schema).unwrap())
                .unwrap();
            let record = wire(42, &datum);
            let (id, datum) = split_wire(&record).unwrap();
            assert_eq!(id, 42);
            let decoded = writer.decode(datum).unwrap();
            assert_eq!(mapper.map(&decoded).unwrap(), mapper.map(&user).unwrap());
        }
    }
}
