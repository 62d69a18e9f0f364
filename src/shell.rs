//! Shell quoting, in one place: for pi-gen's sourced config, and for the command lines
//! people read and paste (release notes, the step summary, log lines). POSIX rules, so
//! `sh`, bash and zsh read every value back exactly. (The `shlex` crate quotes as
//! correctly, but switches quote styles inside a word, which is harder to read in notes.)

/// `value` in single quotes, an embedded `'` as `'\''`: literal for any shell.
pub fn single_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `value` as one shell word: unchanged when it is made only of characters no shell
/// treats specially, single-quoted otherwise. A NUL, which no argument can hold, is
/// dropped.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        value.to_owned()
    } else {
        single_quote(&value.replace('\0', ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_plain_and_the_rest_is_quoted() {
        assert_eq!(quote("pi.img.xz"), "pi.img.xz");
        assert_eq!(quote("o/$(touch x)"), "'o/$(touch x)'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("-rf"), "-rf");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(96))]
        /// bash reads every quoted value back exactly (NUL aside, which no argument holds).
        #[test]
        fn quoting_round_trips_through_bash(s in "(\\PC|[ \t\n'\"$`\\!*?{}()<>|&;#~=%^\\[\\]]){0,24}") {
            let out = crate::process::command("bash")
                .arg("-c")
                .arg(format!("printf %s {}", quote(&s)))
                .output()
                .unwrap();
            proptest::prop_assert!(out.status.success());
            proptest::prop_assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }
}
