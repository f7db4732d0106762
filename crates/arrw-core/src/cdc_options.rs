//! Options of arrw's logical decoding output plugin
//! (`pg_logical_slot_get_changes(..., 'name', 'value')`, `pg_recvlogical -o
//! name=value`, `START_REPLICATION ... ("name" 'value')`).
//!
//! The bytes come from whoever reads the slot, so this is a parser of untrusted
//! input: it never panics, and every error is an [`OptionError`] that the plugin
//! (src/cdc/plugin.rs) turns into an ERROR with SQLSTATE 22023
//! (invalid_parameter_value). Fuzzed by `fuzz/fuzz_targets/cdc_options.rs`.

/// Every option the plugin accepts, for the error hint.
pub const NAMES: &str = "include-transaction, include-vectors, include-row, tables";

/// The decoded settings of one decoding session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Emit `begin`/`commit` events around each transaction's events.
    pub include_transaction: bool,
    /// Put vector columns into `row` (otherwise they are listed in `omitted`).
    pub include_vectors: bool,
    /// Put the new row into insert/update events (otherwise only `key`).
    pub include_row: bool,
    /// Only changes of these tables (`None`: all tables).
    pub tables: Option<Vec<TablePattern>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            include_transaction: false,
            include_vectors: false,
            include_row: true,
            tables: None,
        }
    }
}

/// An option error: message and optional hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    pub message: String,
    pub hint: Option<String>,
}

impl OptionError {
    fn new(message: String, hint: Option<String>) -> Self {
        OptionError { message, hint }
    }
}

/// One entry of the `tables` option: `schema.table`, or `schema.*` for every
/// table of a schema. Names are as stored in the catalog (unquoted names
/// folded to lower case, quoted names kept as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    pub schema: Vec<u8>,
    /// `None` matches every table of `schema`.
    pub table: Option<Vec<u8>>,
}

impl TablePattern {
    pub fn matches(&self, schema: &[u8], table: &[u8]) -> bool {
        self.schema == schema && self.table.as_deref().is_none_or(|t| t == table)
    }
}

/// The longest name PostgreSQL keeps: `NAMEDATALEN - 1` bytes. Longer
/// identifiers are truncated (`truncate_identifier`), at a character boundary.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// How many leading bytes of an identifier PostgreSQL keeps, for a UTF-8
/// database: at most [`MAX_IDENTIFIER_BYTES`], cut at a character boundary
/// (as `pg_mbcliplen` cuts). The plugin passes its own, encoding-aware
/// function to [`parse_options`] and [`Options::set_clipped`].
pub fn utf8_identifier_len(name: &[u8]) -> usize {
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return name.len();
    }
    let mut cut = MAX_IDENTIFIER_BYTES;
    // Back off continuation bytes (10xxxxxx): the cut lands before the
    // character they belong to.
    while cut > 0 && name[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    cut
}

/// Applies every option of one decoding session, in order. An option given
/// twice is an error (the second would silently replace the first: `tables`
/// given twice lost every change of the first list). `clip` says how many
/// bytes of a table or schema name PostgreSQL keeps (see
/// [`utf8_identifier_len`]).
pub fn parse_options<'a>(
    options: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    clip: &dyn Fn(&[u8]) -> usize,
) -> Result<Options, OptionError> {
    let mut out = Options::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in options {
        out.set_clipped(name, value, clip)?;
        if seen.contains(&name) {
            return Err(OptionError::new(
                format!("option \"{name}\" is given more than once"),
                Some(if name == "tables" {
                    "Give \"tables\" once, with every table in its comma-separated list.".into()
                } else {
                    "Give each option once.".into()
                }),
            ));
        }
        seen.push(name);
    }
    Ok(out)
}

impl Options {
    /// Applies option `name` with `value` (`None` when given without a value,
    /// which the replication protocol allows: it means `true` for booleans).
    /// Table and schema names are truncated as in a UTF-8 database.
    pub fn set(&mut self, name: &str, value: Option<&[u8]>) -> Result<(), OptionError> {
        self.set_clipped(name, value, &utf8_identifier_len)
    }

    /// As [`Options::set`], with `clip` saying how many bytes of a table or
    /// schema name PostgreSQL keeps (see [`utf8_identifier_len`]).
    pub fn set_clipped(
        &mut self,
        name: &str,
        value: Option<&[u8]>,
        clip: &dyn Fn(&[u8]) -> usize,
    ) -> Result<(), OptionError> {
        match name {
            "include-transaction" => self.include_transaction = boolean(name, value)?,
            "include-vectors" => self.include_vectors = boolean(name, value)?,
            "include-row" => self.include_row = boolean(name, value)?,
            "tables" => {
                let Some(v) = value else {
                    return Err(OptionError::new(
                        "option \"tables\" requires a value".into(),
                        Some("Give a comma-separated list of schema-qualified table names, such as 'public.docs,public.chunks'.".into()),
                    ));
                };
                self.tables = Some(parse_tables_clipped(v, clip)?);
            }
            _ => {
                return Err(OptionError::new(
                    format!("option \"{name}\" is not recognized by the arrw output plugin"),
                    Some(format!("Valid options are: {NAMES}.")),
                ))
            }
        }
        Ok(())
    }
}

/// PostgreSQL's spellings of a boolean (as `parse_bool` accepts them).
pub fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim().to_ascii_lowercase();
    match s.as_str() {
        "t" | "tr" | "tru" | "true" | "y" | "ye" | "yes" | "on" | "1" => Some(true),
        "f" | "fa" | "fal" | "fals" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn boolean(name: &str, value: Option<&[u8]>) -> Result<bool, OptionError> {
    let Some(v) = value else { return Ok(true) };
    std::str::from_utf8(v)
        .ok()
        .and_then(parse_bool)
        .ok_or_else(|| {
            OptionError::new(
                format!(
                    "invalid value for option \"{name}\": \"{}\"",
                    String::from_utf8_lossy(v)
                ),
                Some("Use true or false.".into()),
            )
        })
}

/// Parses `tables`: comma-separated `schema.table` or `schema.*` entries, with
/// SQL identifier rules (unquoted names fold to lower case, `"Quoted"` names
/// keep their case and may contain `""`, commas and dots; names longer than 63
/// bytes are truncated as PostgreSQL truncates identifiers, here as in a UTF-8
/// database).
pub fn parse_tables(v: &[u8]) -> Result<Vec<TablePattern>, OptionError> {
    parse_tables_clipped(v, &utf8_identifier_len)
}

/// As [`parse_tables`], with `clip` saying how many leading bytes of a name
/// PostgreSQL keeps (the database encoding's character boundaries).
pub fn parse_tables_clipped(
    v: &[u8],
    clip: &dyn Fn(&[u8]) -> usize,
) -> Result<Vec<TablePattern>, OptionError> {
    let bad = |why: &str| {
        OptionError::new(
            format!(
                "invalid value for option \"tables\": \"{}\": {why}",
                String::from_utf8_lossy(v)
            ),
            Some("Give a comma-separated list of schema-qualified table names, such as 'public.docs,public.chunks' or 'public.*'.".into()),
        )
    };
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < v.len() && v[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        let schema = ident(v, &mut i).ok_or_else(|| bad("expected a schema name"))?;
        skip_ws(&mut i);
        if v.get(i) != Some(&b'.') {
            return Err(bad("table names must be schema-qualified"));
        }
        i += 1;
        skip_ws(&mut i);
        let table = if v.get(i) == Some(&b'*') {
            i += 1;
            None
        } else {
            Some(ident(v, &mut i).ok_or_else(|| bad("expected a table name after \".\""))?)
        };
        skip_ws(&mut i);
        // As SQL does (truncate_identifier): the 70-character name of a table
        // created in SQL names the table whose name is its first 63 bytes.
        let truncate = |mut name: Vec<u8>| {
            let keep = clip(&name).min(name.len());
            name.truncate(keep);
            name
        };
        let schema = truncate(schema);
        let table = table.map(truncate);
        if schema.is_empty() || table.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(bad("expected a name"));
        }
        out.push(TablePattern { schema, table });
        match v.get(i) {
            None => return Ok(out),
            Some(b',') => i += 1,
            Some(_) => return Err(bad("expected \",\" between table names")),
        }
    }
}

/// One identifier at `*i`: quoted (`"a""b"`) or unquoted (letters, digits,
/// `_`, `$`, and any non-ASCII byte; folded to lower case).
fn ident(v: &[u8], i: &mut usize) -> Option<Vec<u8>> {
    if v.get(*i) == Some(&b'"') {
        let mut name = Vec::new();
        let mut j = *i + 1;
        loop {
            match v.get(j)? {
                b'"' if v.get(j + 1) == Some(&b'"') => {
                    name.push(b'"');
                    j += 2;
                }
                b'"' => {
                    j += 1;
                    break;
                }
                &c => {
                    name.push(c);
                    j += 1;
                }
            }
        }
        if name.is_empty() {
            return None;
        }
        *i = j;
        return Some(name);
    }
    let start = *i;
    let first = *v.get(start)?;
    if !(first.is_ascii_alphabetic() || first == b'_' || first >= 0x80) {
        return None;
    }
    let mut j = start;
    while let Some(&c) = v.get(j) {
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            j += 1;
        } else {
            break;
        }
    }
    *i = j;
    Some(v[start..j].to_ascii_lowercase())
}

/// Writes `patterns` back as a `tables` value, every identifier quoted, so that
/// [`parse_tables`] gives back the same patterns.
pub fn format_tables(patterns: &[TablePattern]) -> Vec<u8> {
    fn quoted(out: &mut Vec<u8>, name: &[u8]) {
        out.push(b'"');
        for &c in name {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
    }
    let mut out = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        quoted(&mut out, &p.schema);
        out.push(b'.');
        match &p.table {
            Some(t) => quoted(&mut out, t),
            None => out.push(b'*'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn booleans_and_names() {
        let mut o = Options::default();
        assert!(
            o.include_row && !o.include_vectors && !o.include_transaction && o.tables.is_none()
        );
        o.set("include-vectors", Some(b"on")).unwrap();
        o.set("include-transaction", None).unwrap();
        o.set("include-row", Some(b"FALSE")).unwrap();
        assert!(o.include_vectors && o.include_transaction && !o.include_row);
        let e = o.set("include-row", Some(b"maybe")).unwrap_err();
        assert_eq!(
            e.message,
            "invalid value for option \"include-row\": \"maybe\""
        );
        let e = o.set("include_row", Some(b"true")).unwrap_err();
        assert!(e.message.contains("not recognized"), "{e:?}");
        assert_eq!(
            e.hint.as_deref(),
            Some("Valid options are: include-transaction, include-vectors, include-row, tables.")
        );
        assert!(o.set("tables", None).is_err());
        // Invalid UTF-8 in a boolean is an error, not a panic.
        assert!(o.set("include-row", Some(b"\xff\xfe")).is_err());
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool(" off "), Some(false));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool(""), None);
        assert_eq!(parse_bool("o"), None);
    }

    #[test]
    fn tables() {
        let t = parse_tables(br#" public.Docs , "My Schema"."A ""b"".c", s.* "#).unwrap();
        assert_eq!(
            t,
            vec![
                TablePattern {
                    schema: b"public".to_vec(),
                    table: Some(b"docs".to_vec())
                },
                TablePattern {
                    schema: b"My Schema".to_vec(),
                    table: Some(b"A \"b\".c".to_vec())
                },
                TablePattern {
                    schema: b"s".to_vec(),
                    table: None
                },
            ]
        );
        assert!(t[2].matches(b"s", b"anything") && !t[2].matches(b"t", b"x"));
        assert!(t[0].matches(b"public", b"docs") && !t[0].matches(b"public", b"Docs"));
        assert_eq!(parse_tables(&format_tables(&t)).unwrap(), t);
        for bad in [
            "",
            "docs",
            "public.",
            "public.docs,",
            "a.b c.d",
            "\"\".x",
            "1a.b",
            "\"a.b",
            "a.\"b",
            ",",
            "a..b",
            "*.b",
            "a.b.c",
        ] {
            let e = parse_tables(bad.as_bytes()).unwrap_err();
            assert!(
                e.message.starts_with("invalid value for option \"tables\""),
                "{bad}: {e:?}"
            );
        }
    }

    /// An option given twice is an error naming it, not a silent replacement
    /// (`tables` given twice kept only the second list).
    #[test]
    fn repeated_options_are_errors() {
        let pairs: [(&str, Option<&[u8]>); 2] = [
            ("tables", Some(b"public.d1")),
            ("tables", Some(b"public.d2")),
        ];
        let e = parse_options(pairs, &utf8_identifier_len).unwrap_err();
        assert_eq!(e.message, "option \"tables\" is given more than once");
        assert!(e.hint.unwrap().contains("comma-separated"));
        for name in ["include-transaction", "include-vectors", "include-row"] {
            let pairs: [(&str, Option<&[u8]>); 3] = [
                (name, Some(b"true")),
                ("tables", Some(b"a.b")),
                (name, None),
            ];
            let e = parse_options(pairs, &utf8_identifier_len).unwrap_err();
            assert_eq!(
                e.message,
                format!("option \"{name}\" is given more than once")
            );
        }
        // Each option once: all applied.
        let pairs: [(&str, Option<&[u8]>); 4] = [
            ("include-transaction", None),
            ("include-vectors", Some(b"on")),
            ("include-row", Some(b"off")),
            ("tables", Some(b"public.d1, public.d2")),
        ];
        let o = parse_options(pairs, &utf8_identifier_len).unwrap();
        assert!(o.include_transaction && o.include_vectors && !o.include_row);
        assert_eq!(o.tables.unwrap().len(), 2);
        // An unknown option is reported as unknown, also when repeated.
        let pairs: [(&str, Option<&[u8]>); 2] = [("nope", None), ("nope", None)];
        let e = parse_options(pairs, &utf8_identifier_len).unwrap_err();
        assert!(e.message.contains("not recognized"), "{e:?}");
    }

    /// Names longer than 63 bytes are truncated as SQL truncates identifiers,
    /// quoted or not, at a character boundary.
    #[test]
    fn long_names_are_truncated_like_identifiers() {
        let l70 = "l".repeat(70);
        let t = parse_tables(format!("public.{l70}").as_bytes()).unwrap();
        assert_eq!(t[0].table.as_deref(), Some("l".repeat(63).as_bytes()));
        let t = parse_tables(format!("\"{}\".\"{}\"", "S".repeat(64), "T".repeat(100)).as_bytes())
            .unwrap();
        assert_eq!(t[0].schema, "S".repeat(63).as_bytes());
        assert_eq!(t[0].table.as_deref(), Some("T".repeat(63).as_bytes()));
        // 62 ASCII bytes, then a two-byte character across byte 63: cut before it.
        let name = format!("{}é{}", "a".repeat(62), "b".repeat(5));
        let t = parse_tables(format!("s.{name}").as_bytes()).unwrap();
        assert_eq!(t[0].table.as_deref(), Some("a".repeat(62).as_bytes()));
        // 21 three-byte characters are exactly 63 bytes and stay; a 22nd goes.
        let name = "€".repeat(22);
        let t = parse_tables(format!("s.{name}").as_bytes()).unwrap();
        assert_eq!(t[0].table.as_deref(), Some("€".repeat(21).as_bytes()));
        // 63 bytes and shorter are kept whole; schema.* keeps its star.
        let t = parse_tables(format!("{}.*", "x".repeat(63)).as_bytes()).unwrap();
        assert_eq!(t[0].schema.len(), 63);
        assert_eq!(t[0].table, None);
        assert!(t[0].matches("x".repeat(63).as_bytes(), b"any"));
        // The plugin's clip (the database encoding's) is the one used.
        let ten = |n: &[u8]| n.len().min(10);
        let t = parse_tables_clipped(b"abcdefghijkl.mnopqrstuvwxyz", &ten).unwrap();
        assert_eq!(
            (t[0].schema.as_slice(), t[0].table.as_deref()),
            (&b"abcdefghij"[..], Some(&b"mnopqrstuv"[..]))
        );
        let mut o = Options::default();
        o.set_clipped("tables", Some(b"abcdefghijkl.x"), &ten)
            .unwrap();
        assert_eq!(o.tables.unwrap()[0].schema, b"abcdefghij");
    }

    fn ident() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 1..12)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any byte string: an answer, never a panic.
        #[test]
        fn never_panics(v in prop::collection::vec(any::<u8>(), 0..64), name in "[a-z-]{0,20}") {
            let _ = parse_tables(&v);
            let mut o = Options::default();
            let _ = o.set(&name, Some(&v));
        }

        /// Quoted names of any bytes come back exactly.
        #[test]
        fn format_round_trips(
            pats in prop::collection::vec((ident(), prop::option::of(ident())), 1..5)
        ) {
            let pats: Vec<TablePattern> = pats
                .into_iter()
                .map(|(schema, table)| TablePattern { schema, table })
                .collect();
            prop_assert_eq!(parse_tables(&format_tables(&pats)).unwrap(), pats);
        }
    }
}
