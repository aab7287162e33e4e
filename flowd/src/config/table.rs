//! The settings as people read them: file keys, flags and the README's settings table.

use clap::{Args as _, Command};

use super::{SettingFlags, SETTINGS};

/// One setting's doc and default, as declared.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub field: &'static str,
    pub shown_default: &'static str,
    pub doc: &'static str,
}

/// The YAML key of a setting: its field name in camelCase (serde's `rename_all` does the same).
pub fn file_key(field: &str) -> String {
    let mut key = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            key.extend(c.to_uppercase());
            upper = false;
        } else {
            key.push(c);
        }
    }
    key
}

/// A setting's doc as one line, the way the table and `--help` show it.
fn one_line(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `--help` text of a setting's flag: its doc and its default.
pub fn flag_help(doc: &str, shown_default: &str) -> String {
    format!("{} [default: {shown_default}]", one_line(doc))
}

/// The flag of a setting as `flowd run` takes it, e.g. `--interface/-i`.
fn flag_of(command: &Command, field: &str) -> String {
    let Some(arg) = command.get_arguments().find(|arg| arg.get_id() == field) else {
        return "—".to_owned();
    };
    let long = arg.get_long().map(|long| format!("--{long}"));
    let short = arg.get_short().map(|short| format!("-{short}"));
    [long, short]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/")
}

/// The README's settings table, generated from the declarations so it cannot drift.
pub fn markdown_table() -> String {
    let command = SettingFlags::augment_args(Command::new("flowd-run"));
    let mut table = String::from("| key (file) | flag | default | meaning |\n|---|---|---|---|\n");
    for setting in SETTINGS {
        table.push_str(&format!(
            "| `{}` | `{}` | `{}` | {} |\n",
            file_key(setting.field),
            flag_of(&command, setting.field),
            setting.shown_default,
            one_line(setting.doc)
        ));
    }
    table
}
