//! The one macro that turns the settings list into everything that needs it.
//!
//! Each setting is written once, in `settings.rs`: its doc, type, default, the default as shown
//! to people, an optional check and its flag. From that line come the validated [`Config`]
//! field, the YAML key (camelCase, refused when unknown), the `flowd run` flag with its help,
//! the layering of file over defaults and flags over file, and the README's settings table.
//!
//! A setting's kind says how "not given" looks in each layer:
//! - `value`: always has a value; the file and the flag may leave it unset.
//! - `optional`: `Option<T>` for the declared `T`, off by default; given in a layer, it is set.
//! - `list`: `Vec<T>` for the declared `T`, a repeatable flag; no flags leave the file's list.
//! - `switch`: a boolean flag that can only turn the setting on.
//! - `duration`: a value read as a human duration (`5s`, `1m30s`, `24h`).
//!
//! [`Config`]: super::Config

/// The validated type of a setting, from its kind and the type the declaration names.
macro_rules! config_type {
    (list $ty:ty) => { Vec<$ty> };
    (optional $ty:ty) => { Option<$ty> };
    ($kind:ident $ty:ty) => { $ty };
}

/// The file layer's type of a setting: `None` when the key is absent.
macro_rules! file_type {
    (list $ty:ty) => { Option<Vec<$ty>> };
    (duration $ty:ty) => { Option<$crate::config::HumanDuration> };
    ($kind:ident $ty:ty) => { Option<$ty> };
}

/// The flags struct. clap reads `Option` and `Vec` from the field's written type, so the
/// fields are accumulated here with their containers spelled out rather than produced by a
/// type macro clap cannot see through.
macro_rules! setting_flags {
    (@fields [$($fields:tt)*]) => {
        /// The settings as `flowd run` flags; each overrides the file.
        #[derive(Debug, Default, clap::Args)]
        pub struct SettingFlags { $($fields)* }
    };
    (@fields [$($fields:tt)*] value $name:ident $ty:ty, [$($attrs:tt)*] $($rest:tt)*) => {
        setting_flags!(@fields [$($fields)* $($attrs)* pub $name: Option<$ty>,] $($rest)*);
    };
    (@fields [$($fields:tt)*] duration $name:ident $ty:ty, [$($attrs:tt)*] $($rest:tt)*) => {
        setting_flags!(@fields [
            $($fields)* $($attrs)* pub $name: Option<$crate::config::HumanDuration>,
        ] $($rest)*);
    };
    (@fields [$($fields:tt)*] optional $name:ident $ty:ty, [$($attrs:tt)*] $($rest:tt)*) => {
        setting_flags!(@fields [$($fields)* $($attrs)* pub $name: Option<$ty>,] $($rest)*);
    };
    (@fields [$($fields:tt)*] list $name:ident $ty:ty, [$($attrs:tt)*] $($rest:tt)*) => {
        setting_flags!(@fields [$($fields)* $($attrs)* pub $name: Vec<$ty>,] $($rest)*);
    };
    (@fields [$($fields:tt)*] switch $name:ident $ty:ty, [$($attrs:tt)*] $($rest:tt)*) => {
        setting_flags!(@fields [$($fields)* $($attrs)* pub $name: bool,] $($rest)*);
    };
}

/// A flag turned into a file layer, so both layers are laid over the base the same way.
macro_rules! flag_as_layer {
    (list $flag:expr) => {
        (!$flag.is_empty()).then(|| $flag.clone())
    };
    (switch $flag:expr) => {
        $flag.then_some(true)
    };
    ($kind:ident $flag:expr) => {
        $flag.clone()
    };
}

/// Lays one layer's value over the base.
macro_rules! lay_over {
    (optional $layer:expr, $base:expr) => {
        if let Some(value) = $layer {
            $base = Some(value);
        }
    };
    (duration $layer:expr, $base:expr) => {
        if let Some(value) = $layer {
            $base = value.0;
        }
    };
    ($kind:ident $layer:expr, $base:expr) => {
        if let Some(value) = $layer {
            $base = value;
        }
    };
}

macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $kind:ident $ty:ty = $default:expr, shown $shown:literal
            $(, check $check:path)?
            , flag #[$flag:meta];
    )*) => {
        /// The agent's settings, complete and validated.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $name: config_type!($kind $ty), )*
        }

        impl Default for Config {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        /// The file's shape. Every key is optional; unknown keys are refused so a typo is not
        /// ignored.
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct ConfigFile {
            $( pub $name: file_type!($kind $ty), )*
        }

        setting_flags!(@fields [] $(
            $kind $name $ty, [
                #[$flag]
                #[arg(help = $crate::config::table::flag_help(concat!($($doc),+), $shown))]
            ]
        )*);

        impl ConfigFile {
            /// Lays `self` over `base`: every key present in the file replaces the base value.
            pub fn apply(self, mut base: Config) -> Config {
                $( lay_over!($kind self.$name, base.$name); )*
                base
            }
        }

        impl SettingFlags {
            /// The flags given, as a layer to put over the file.
            pub fn as_layer(&self) -> ConfigFile {
                ConfigFile { $( $name: flag_as_layer!($kind self.$name), )* }
            }
        }

        impl Config {
            /// Each setting's own check; relations between settings are checked by the caller.
            pub(super) fn check_each(&self) -> Result<(), ConfigError> {
                $( $(
                    $check(&self.$name).map_err(|rejected| rejected.of(stringify!($name)))?;
                )? )*
                Ok(())
            }
        }

        /// Every setting with its doc and default as shown to people, in declaration order.
        pub const SETTINGS: &[Setting] = &[
            $( Setting {
                field: stringify!($name),
                shown_default: $shown,
                doc: concat!($($doc),+),
            }, )*
        ];
    };
}
