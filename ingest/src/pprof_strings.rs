//! The string table of a pprof being built here (from stack formats, JFR or OTLP): each
//! distinct string once, `""` at index 0 as pprof requires.

use std::collections::HashMap;

use hearth_proto::pprof::Profile;

#[derive(Debug, Default)]
pub(crate) struct StringTable {
    ids: HashMap<String, i64>,
}

impl StringTable {
    /// The index of `text` in `profile`'s string table, added when new.
    pub(crate) fn id(&mut self, profile: &mut Profile, text: &str) -> i64 {
        if profile.string_table.is_empty() {
            profile.string_table.push(String::new());
        }
        if text.is_empty() {
            return 0;
        }
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = profile.string_table.len() as i64;
        profile.string_table.push(text.to_string());
        self.ids.insert(text.to_string(), id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_string_once_and_empty_first() {
        let (mut table, mut profile) = (StringTable::default(), Profile::default());
        assert_eq!(table.id(&mut profile, "cpu"), 1);
        assert_eq!(table.id(&mut profile, ""), 0);
        assert_eq!(table.id(&mut profile, "cpu"), 1);
        assert_eq!(profile.string_table, ["", "cpu"]);
    }
}
