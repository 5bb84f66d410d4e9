//! The seam between the shared SQL and a backend: values to bind ([`Value`]),
//! rows to read ([`SqlRow`]), and how a Rust type is stored in a column
//! ([`Column`]). A backend binds each `Value` its own way (Postgres: native
//! `timestamptz`/`jsonb`; SQLite: Unix microseconds and JSON text) and reads
//! its own rows; everything above this file is written once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::auth::hash::KeyHash;
use crate::credits::CreditState;
use crate::keys::hours::AllowedHours;
use crate::ratelimit::window::Limits;
use crate::store::StoreError;

/// A value to bind. `None` is a typed SQL NULL (Postgres needs the type).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(Option<bool>),
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Uuid(Option<Uuid>),
    Time(Option<DateTime<Utc>>),
    Json(Option<serde_json::Value>),
}

/// A result row, read by column name.
pub trait SqlRow {
    fn opt_bool(&self, col: &'static str) -> Result<Option<bool>, StoreError>;
    fn opt_i64(&self, col: &'static str) -> Result<Option<i64>, StoreError>;
    fn opt_text(&self, col: &'static str) -> Result<Option<String>, StoreError>;
    fn opt_bytes(&self, col: &'static str) -> Result<Option<Vec<u8>>, StoreError>;
    fn opt_uuid(&self, col: &'static str) -> Result<Option<Uuid>, StoreError>;
    fn opt_time(&self, col: &'static str) -> Result<Option<DateTime<Utc>>, StoreError>;
    fn opt_json<T: DeserializeOwned>(&self, col: &'static str) -> Result<Option<T>, StoreError>;

    /// A column of any [`Column`] type.
    fn get<T: Column>(&self, col: &'static str) -> Result<T, StoreError>
    where
        Self: Sized,
    {
        T::read(self, col)
    }
}

/// How a Rust type is stored in one column.
pub trait Column: Sized {
    fn value(&self) -> Result<Value, StoreError>;
    fn read(row: &impl SqlRow, col: &'static str) -> Result<Self, StoreError>;
}

fn required<T>(v: Option<T>, col: &'static str) -> Result<T, StoreError> {
    v.ok_or(StoreError::Corrupt {
        column: col,
        reason: "unexpected NULL".into(),
    })
}

/// `Column` for a type and its `Option`, given the `Value` variant and the
/// row accessor that store and read it.
macro_rules! plain_columns {
    ($($ty:ty => $variant:ident, $get:ident);* $(;)?) => {$(
        impl Column for $ty {
            fn value(&self) -> Result<Value, StoreError> {
                Ok(Value::$variant(Some(self.clone())))
            }
            fn read(row: &impl SqlRow, col: &'static str) -> Result<Self, StoreError> {
                required(row.$get(col)?, col)
            }
        }
        impl Column for Option<$ty> {
            fn value(&self) -> Result<Value, StoreError> {
                Ok(Value::$variant(self.clone()))
            }
            fn read(row: &impl SqlRow, col: &'static str) -> Result<Self, StoreError> {
                row.$get(col)
            }
        }
    )*};
}

plain_columns! {
    bool => Bool, opt_bool;
    i64 => Int, opt_i64;
    String => Text, opt_text;
    Uuid => Uuid, opt_uuid;
    DateTime<Utc> => Time, opt_time;
    Vec<u8> => Bytes, opt_bytes;
}

/// Lists and objects are stored as JSON (`jsonb` in Postgres, text in SQLite).
macro_rules! json_columns {
    ($($ty:ty),* $(,)?) => {$(
        impl Column for $ty {
            fn value(&self) -> Result<Value, StoreError> {
                serde_json::to_value(self)
                    .map(|v| Value::Json(Some(v)))
                    .map_err(StoreError::Encode)
            }
            fn read(row: &impl SqlRow, col: &'static str) -> Result<Self, StoreError> {
                required(row.opt_json(col)?, col)
            }
        }
    )*};
}

json_columns!(
    Vec<String>,
    Vec<IpNetwork>,
    Limits,
    BTreeMap<String, String>,
    BTreeMap<String, Limits>,
);

/// Optional objects stored as JSON, NULL when absent: credits (an account
/// without any), allowed hours (a key usable at any time).
macro_rules! optional_json_columns {
    ($($ty:ty),* $(,)?) => {$(
        impl Column for Option<$ty> {
            fn value(&self) -> Result<Value, StoreError> {
                match self {
                    None => Ok(Value::Json(None)),
                    Some(c) => serde_json::to_value(c)
                        .map(|v| Value::Json(Some(v)))
                        .map_err(StoreError::Encode),
                }
            }
            fn read(row: &impl SqlRow, col: &'static str) -> Result<Self, StoreError> {
                row.opt_json(col)
            }
        }
    )*};
}

optional_json_columns!(CreditState, AllowedHours);

impl Column for KeyHash {
    fn value(&self) -> Result<Value, StoreError> {
        Ok(Value::Bytes(Some(self.0.to_vec())))
    }
    fn read(row: &impl SqlRow, col: &'static str) -> Result<Self, StoreError> {
        let bytes = required(row.opt_bytes(col)?, col)?;
        KeyHash::from_slice(&bytes).ok_or(StoreError::Corrupt {
            column: col,
            reason: format!("a key hash must be 32 bytes, not {}", bytes.len()),
        })
    }
}
