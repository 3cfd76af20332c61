//! The `settings!` macro: from one list of settings, the [`crate::Settings`] struct, its
//! defaults, how sources are read into it, each setting's own rule and README's table.

/// One documented environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Environment variable name.
    pub name: String,
    /// Default value as written in the environment.
    pub default: String,
    /// Unit or format of the value, and the rule it must meet.
    pub unit: String,
    /// The binaries that read it.
    pub binaries: &'static str,
    /// What it does.
    pub description: String,
}

/// Joins a setting's unit words: its own, the bare unit of a duration, its rule.
pub(crate) fn unit_text(unit: &[&str], bare: &[&str], rule: &[String]) -> String {
    let mut text: Vec<String> = unit.iter().map(|u| (*u).to_owned()).collect();
    text.extend(bare.iter().map(|b| format!("duration (bare number: {b})")));
    text.extend(rule.iter().cloned());
    text.join(", ")
}

/// Defines every setting once. Each entry is
///
/// ```text
/// /// What it does (README's "Meaning").
/// name: Type = default
///     [, bare Secs|Millis]   a duration, and the unit of a bare number
///     [, unit "words"]       its unit or format, for README
///     [, shown "(text)"]     the default as README says it, when not the value itself
///     [, check rule]         a condition on the value alone (crate::value's rules)
///     , read by BINARIES;
/// ```
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $ty:ty = $default:expr
        $(, bare $bare:ident)?
        $(, unit $unit:literal)?
        $(, shown $shown:literal)?
        $(, check $rule:expr)?
        , read by $by:expr;
    )*) => {
        /// Every setting of every binary; each binary reads the part it needs.
        ///
        /// Field names are the lower-cased environment variable names.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $($(#[doc = $doc])+ pub $name: $ty,)*
        }

        impl Default for Settings {
            fn default() -> Self {
                Self { $($name: $default,)* }
            }
        }

        /// What one configuration source sets: any of the settings, as serde reads them.
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct Layered {
            $(
                #[serde(default)]
                $name: Option<
                    <$ty as $crate::value::Setting $(<$crate::duration::$bare>)?>::Wire
                >,
            )*
        }

        impl Layered {
            /// The settings given, and the defaults of the rest.
            pub(crate) fn resolve(self) -> Settings {
                let defaults = Settings::default();
                Settings {
                    $($name: match self.$name {
                        Some(wire) => {
                            <$ty as $crate::value::Setting $(<$crate::duration::$bare>)?>
                                ::from_wire(wire)
                        }
                        None => defaults.$name,
                    },)*
                }
            }
        }

        /// Every setting's name: the lower-cased variable name.
        pub(crate) const FIELDS: &[&str] = &[$(stringify!($name)),*];

        impl Settings {
            /// Checks each setting's own rule; `validate` adds the rules across settings.
            pub(crate) fn check_each(&self) -> Result<(), $crate::SettingsError> {
                $($(
                    let rule: $crate::value::Rule<$ty> = $rule;
                    if !rule.holds(&self.$name) {
                        let message = format!("must be {}", rule.text());
                        return Err($crate::invalid(stringify!($name), message));
                    }
                )?)*
                Ok(())
            }

            /// The variables defined here, in order, with their defaults as text.
            pub(crate) fn defined() -> Vec<$crate::Variable> {
                let defaults = Settings::default();
                vec![$($crate::Variable {
                    name: stringify!($name).to_ascii_uppercase(),
                    default: {
                        let shown: Option<&str> = None $(.or(Some($shown)))?;
                        shown.map_or_else(
                            || $crate::value::EnvText::env_text(&defaults.$name),
                            str::to_owned,
                        )
                    },
                    unit: $crate::macros::unit_text(
                        &[$($unit)?],
                        &[$(<$crate::duration::$bare as $crate::duration::Bare>::SUFFIX)?],
                        &[$({
                            let rule: $crate::value::Rule<$ty> = $rule;
                            rule.text().to_owned()
                        })?],
                    ),
                    binaries: $by,
                    description: [$($doc),+].map(str::trim).join(" "),
                }),*]
            }

            /// Every setting as it would be written in the environment.
            #[cfg(test)]
            pub(crate) fn env_texts(&self) -> Vec<(&'static str, String)> {
                vec![$((stringify!($name), $crate::value::EnvText::env_text(&self.$name))),*]
            }
        }
    };
}

pub(crate) use settings;
