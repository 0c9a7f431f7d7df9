//! Arrow schemas of the logical tables. Heads build batches with these schemas and blocks store
//! them as Parquet, so one provider per table reads both the same way.
//!
//! Times are `Timestamp(ns, UTC)`; `series_id` is the series fingerprint, stable across heads and
//! blocks; stack-trace, location, function and mapping ids are local to a
//! (source, `service_name`) symbol partition.

use std::sync::{Arc, LazyLock};

use arrow::array::{AsArray, MapArray};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::model::Labels;

pub const SERIES_ID: &str = "series_id";
pub const TIME: &str = "time";
pub const SERVICE_NAME: &str = "service_name";
pub const LABELS: &str = "labels";
pub const MIN_TIME: &str = "min_time";
pub const MAX_TIME: &str = "max_time";
pub const PROFILE_ID: &str = "profile_id";
/// The virtual column every table gets: the head or block a row comes from.
pub const SOURCE: &str = "source";

/// `source`: few distinct values per query, so dictionary-encoded.
pub fn source_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8))
}

pub fn source_field() -> Field {
    Field::new(SOURCE, source_type(), false)
}

pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// `service_name` in per-row tables: few distinct values, so dictionary-encoded.
pub fn service_name_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The labels map, with the entry names `MapBuilder` uses.
pub fn labels_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

/// One row per series and source (a head or a block) holding it.
pub static SERIES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(SERIES_ID, DataType::UInt64, false),
        Field::new("profile_type", DataType::Utf8, false),
        Field::new(SERVICE_NAME, DataType::Utf8, false),
        Field::new(LABELS, labels_type(), false),
        Field::new(MIN_TIME, time_type(), false),
        Field::new(MAX_TIME, time_type(), false),
        Field::new("profile_count", DataType::UInt64, false),
    ]))
});

/// One row per profile of one series (one sample type of a pprof).
pub static PROFILES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(SERIES_ID, DataType::UInt64, false),
        Field::new(TIME, time_type(), false),
        Field::new(PROFILE_ID, DataType::Utf8, false),
        Field::new("duration_nanos", DataType::Int64, false),
        Field::new("period", DataType::Int64, false),
        Field::new("sample_count", DataType::UInt32, false),
        Field::new("total_value", DataType::Int64, false),
    ]))
});

/// One row per sample; sorted by series, time and stack-trace id in blocks.
pub static SAMPLES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(SERIES_ID, DataType::UInt64, false),
        Field::new(TIME, time_type(), false),
        Field::new(SERVICE_NAME, service_name_type(), false),
        Field::new("stacktrace_id", DataType::UInt32, false),
        Field::new("value", DataType::Int64, false),
        Field::new("span_id", DataType::UInt64, true),
    ]))
});

/// The stack-trace tree: one row per node; a stack-trace id is its leaf node.
pub static STACKTRACES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(SERVICE_NAME, service_name_type(), false),
        Field::new("stacktrace_id", DataType::UInt32, false),
        Field::new("parent_id", DataType::UInt32, false),
        Field::new("location_id", DataType::UInt32, false),
    ]))
});

pub fn line_fields() -> Fields {
    Fields::from(vec![
        Field::new("function_id", DataType::UInt32, false),
        Field::new("line", DataType::Int64, false),
    ])
}

pub static LOCATIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(SERVICE_NAME, service_name_type(), false),
        Field::new("location_id", DataType::UInt32, false),
        Field::new("mapping_id", DataType::UInt32, true),
        Field::new("address", DataType::UInt64, false),
        Field::new(
            "lines",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(line_fields()),
                false,
            ))),
            false,
        ),
    ]))
});

pub static FUNCTIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(SERVICE_NAME, service_name_type(), false),
        Field::new("function_id", DataType::UInt32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("system_name", DataType::Utf8, false),
        Field::new("filename", DataType::Utf8, false),
        Field::new("start_line", DataType::Int64, false),
    ]))
});

pub static MAPPINGS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(SERVICE_NAME, service_name_type(), false),
        Field::new("mapping_id", DataType::UInt32, false),
        Field::new("memory_start", DataType::UInt64, false),
        Field::new("memory_limit", DataType::UInt64, false),
        Field::new("file_offset", DataType::UInt64, false),
        Field::new("filename", DataType::Utf8, false),
        Field::new("build_id", DataType::Utf8, false),
        Field::new("has_functions", DataType::Boolean, false),
        Field::new("has_filenames", DataType::Boolean, false),
        Field::new("has_line_numbers", DataType::Boolean, false),
        Field::new("has_inline_frames", DataType::Boolean, false),
    ]))
});

/// The logical tables, with the file each is stored in inside a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    Series,
    Profiles,
    Samples,
    Stacktraces,
    Locations,
    Functions,
    Mappings,
}

impl TableKind {
    pub const ALL: [TableKind; 7] = [
        TableKind::Series,
        TableKind::Profiles,
        TableKind::Samples,
        TableKind::Stacktraces,
        TableKind::Locations,
        TableKind::Functions,
        TableKind::Mappings,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TableKind::Series => "series",
            TableKind::Profiles => "profiles",
            TableKind::Samples => "samples",
            TableKind::Stacktraces => "stacktraces",
            TableKind::Locations => "locations",
            TableKind::Functions => "functions",
            TableKind::Mappings => "mappings",
        }
    }

    /// The file's path relative to the block's folder.
    pub fn file_name(self) -> &'static str {
        match self {
            TableKind::Series => "series.parquet",
            TableKind::Profiles => "profiles.parquet",
            TableKind::Samples => "samples.parquet",
            TableKind::Stacktraces => "symbols/stacktraces.parquet",
            TableKind::Locations => "symbols/locations.parquet",
            TableKind::Functions => "symbols/functions.parquet",
            TableKind::Mappings => "symbols/mappings.parquet",
        }
    }

    /// The table as queried: the stored columns plus the virtual `source`.
    pub fn table_schema(self) -> SchemaRef {
        let stored = self.schema();
        let mut fields: Vec<Field> = stored.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(source_field());
        Arc::new(Schema::new(fields))
    }

    /// The columns stored in heads and block files.
    pub fn schema(self) -> SchemaRef {
        match self {
            TableKind::Series => SERIES.clone(),
            TableKind::Profiles => PROFILES.clone(),
            TableKind::Samples => SAMPLES.clone(),
            TableKind::Stacktraces => STACKTRACES.clone(),
            TableKind::Locations => LOCATIONS.clone(),
            TableKind::Functions => FUNCTIONS.clone(),
            TableKind::Mappings => MAPPINGS.clone(),
        }
    }

    /// The tables that hold symbols (one partition per service), in the order a symbol
    /// partition is rebuilt from them.
    pub const SYMBOLS: [TableKind; 4] = [
        TableKind::Mappings,
        TableKind::Functions,
        TableKind::Locations,
        TableKind::Stacktraces,
    ];

    /// Whether the table holds symbols (one partition per service).
    pub fn is_symbols(self) -> bool {
        Self::SYMBOLS.contains(&self)
    }
}

/// Row `row` of a `labels` column (a map of label name to value) as a label set.
pub fn labels_of(maps: &MapArray, row: usize) -> Labels {
    let keys = maps.keys().as_string::<i32>();
    let values = maps.values().as_string::<i32>();
    let offsets = maps.value_offsets();
    let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
    Labels::from_pairs((start..end).map(|i| (keys.value(i), values.value(i))))
}
