//! Splitting a command line the way virsh does (its `vshCommandStringGetArg` rules): blanks separate
//! words, `;` and newlines separate commands, `'…'` quotes literally, `"…"` quotes with `\`
//! escapes, `\` escapes outside single quotes, and a word starting with `#` comments out the rest
//! of the line.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("dangling \\")]
    DanglingBackslash,
    #[error("missing \"")]
    MissingQuote,
}

/// The commands of `line`, each as its words.
pub fn split_commands(line: &str) -> Result<Vec<Vec<String>>, LexError> {
    let chars: Vec<char> = line.chars().collect();
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut i = 0;
    loop {
        // Skip blanks and backslash-newline continuations.
        while i < chars.len() {
            match chars[i] {
                ' ' | '\t' => i += 1,
                '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
                _ => break,
            }
        }
        if i >= chars.len() {
            break;
        }
        match chars[i] {
            ';' | '\n' => {
                i += 1;
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
                continue;
            }
            // A word starting with '#' comments out the rest of the line (and ends the command).
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        let mut word = String::new();
        let (mut single, mut double) = (false, false);
        while i < chars.len() {
            let c = chars[i];
            if !single && !double && matches!(c, ' ' | '\t' | ';' | '\n') {
                break;
            }
            if !double && c == '\'' {
                single = !single;
                i += 1;
                continue;
            }
            if !single && c == '\\' {
                i += 1;
                match chars.get(i) {
                    None => return Err(LexError::DanglingBackslash),
                    Some('\n') => {
                        i += 1;
                        continue;
                    }
                    Some(&e) => {
                        word.push(e);
                        i += 1;
                        continue;
                    }
                }
            }
            if !single && c == '"' {
                double = !double;
                i += 1;
                continue;
            }
            word.push(c);
            i += 1;
        }
        if double {
            return Err(LexError::MissingQuote);
        }
        words.push(word);
    }
    if !words.is_empty() {
        commands.push(words);
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Vec<String> {
        let mut c = split_commands(line).unwrap();
        assert_eq!(c.len(), 1, "{line:?}");
        c.remove(0)
    }

    #[test]
    fn virsh_quote_removal() {
        assert_eq!(one("echo a \t b"), ["echo", "a", "b"]);
        assert_eq!(one("echo \"a \t b\""), ["echo", "a \t b"]);
        assert_eq!(one("echo 'a \t b'"), ["echo", "a \t b"]);
        assert_eq!(one("echo a\\ \\\t\\ b"), ["echo", "a \t b"]);
        assert_eq!(
            one("echo \\' \\\" \\;echo\ta"),
            ["echo", "'", "\"", ";echo", "a"]
        );
        assert_eq!(
            one("echo  \"'\"  '\"'  '\\'\"\\\\\""),
            ["echo", "'", "\"", "\\\\"]
        );
        assert_eq!(
            one("echo --s\\h'e'\"l\"l -- a"),
            ["echo", "--shell", "--", "a"]
        );
    }

    #[test]
    fn separators_and_comments() {
        assert_eq!(
            split_commands(";echo a; ; echo b;").unwrap(),
            [vec!["echo", "a"], vec!["echo", "b"]]
        );
        assert_eq!(
            split_commands("echo \\' \\\" \\\\;echo\ta").unwrap(),
            [vec!["echo", "'", "\"", "\\"], vec!["echo", "a"]]
        );
        assert_eq!(
            split_commands("# a comment\nlist --all # not a comment").unwrap(),
            [vec!["list", "--all"]]
        );
        assert_eq!(one("echo a#b"), ["echo", "a#b"]);
        assert_eq!(split_commands("echo a\\"), Err(LexError::DanglingBackslash));
        assert_eq!(split_commands("echo \"a"), Err(LexError::MissingQuote));
    }
}
