//! The token's text form and the `IP:TOKEN` connection string.

use std::collections::HashSet;

use ferry_core::token::{TOKEN_BYTES, TOKEN_CHARS};
use ferry_core::{ConnectionString, ConnectionStringError, SeededEntropy, Token, TokenError};

#[test]
fn tokens_round_trip_through_text() {
    let mut entropy = SeededEntropy::new(1);
    let mut seen = HashSet::new();
    for _ in 0..2000 {
        let token = Token::generate(&mut entropy);
        let text = token.to_string();
        assert_eq!(text.len(), TOKEN_CHARS);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
        assert!(!text.contains(['i', 'l', 'o', 'u']), "{text}");
        assert_eq!(text.parse::<Token>().unwrap(), token);
        seen.insert(token.as_bytes().to_vec());
    }
    assert_eq!(
        seen.len(),
        2000,
        "tokens repeat: not enough randomness used"
    );
}

#[test]
fn token_text_covers_all_128_bits() {
    for bit in 0..TOKEN_BYTES * 8 {
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[bit / 8] = 0x80 >> (bit % 8);
        let token = Token::from_bytes(bytes);
        assert_ne!(
            token.to_string(),
            Token::from_bytes([0; 16]).to_string(),
            "bit {bit}"
        );
        assert_eq!(
            token.to_string().parse::<Token>().unwrap(),
            token,
            "bit {bit}"
        );
    }
}

#[test]
fn parsing_forgives_case_dashes_and_lookalikes() {
    let token = Token::from_bytes([0x1f; 16]);
    let text = token.to_string();
    assert_eq!(text.to_uppercase().parse::<Token>().unwrap(), token);
    let dashed = format!("{}-{}-{}", &text[..8], &text[8..16], &text[16..]);
    assert_eq!(dashed.parse::<Token>().unwrap(), token);
    let zero_one = Token::from_bytes([0; 16])
        .to_string()
        .replacen('0', "o", 3)
        .replacen('0', "O", 3);
    assert_eq!(
        zero_one.parse::<Token>().unwrap(),
        Token::from_bytes([0; 16])
    );
    let ones = "1111111111111111111111111".to_string() + "0";
    let lookalike = "iIlL111111111111111111111".to_string() + "0";
    assert_eq!(
        lookalike.parse::<Token>().unwrap(),
        ones.parse::<Token>().unwrap()
    );
}

#[test]
fn bad_tokens_say_what_is_wrong_without_echoing_it() {
    assert_eq!("abc".parse::<Token>(), Err(TokenError::Length { found: 3 }));
    let mut text = Token::from_bytes([7; 16]).to_string();
    text.replace_range(4..5, "u");
    assert_eq!(
        text.parse::<Token>(),
        Err(TokenError::Character { position: 5 })
    );
    // The last character carries 3 bits; a value using the 2 spare bits is a typo.
    let mut text = Token::from_bytes([0; 16]).to_string();
    text.replace_range(25..26, "1");
    assert_eq!(text.parse::<Token>(), Err(TokenError::NonCanonical));
    let message = TokenError::Character { position: 5 }.to_string();
    assert!(message.contains("position 5"), "{message}");
    assert_eq!(
        format!("{:?}", Token::from_bytes([7; 16])),
        "Token(<redacted>)"
    );
}

#[test]
fn connection_strings_round_trip_ipv4_and_ipv6() {
    let token = Token::from_bytes([0xa5; 16]);
    for ip in ["100.101.29.44", "127.0.0.1"] {
        let text = format!("{ip}:{token}");
        let parsed: ConnectionString = text.parse().unwrap();
        assert_eq!(parsed.ip.to_string(), ip);
        assert_eq!(parsed.token, token);
        assert_eq!(parsed.to_string(), text);
    }
    let text = format!("[fd7a:115c:a1e0::1]:{token}");
    let parsed: ConnectionString = text.parse().unwrap();
    assert_eq!(parsed.ip.to_string(), "fd7a:115c:a1e0::1");
    assert_eq!(parsed.to_string(), text);
    // Surrounding whitespace from a paste is harmless.
    assert_eq!(
        format!("  127.0.0.1:{token}\n")
            .parse::<ConnectionString>()
            .unwrap()
            .token,
        token
    );
}

#[test]
fn connection_string_errors_name_the_wrong_part() {
    let token = Token::from_bytes([0xa5; 16]).to_string();
    let parse = |s: &str| s.parse::<ConnectionString>().unwrap_err();
    assert_eq!(
        parse("no-separator"),
        ConnectionStringError::MissingSeparator
    );
    assert_eq!(
        parse(&format!("300.1.1.1:{token}")),
        ConnectionStringError::BadAddress("300.1.1.1".into())
    );
    assert_eq!(
        parse(&format!("host.example:{token}")),
        ConnectionStringError::BadAddress("host.example".into())
    );
    assert_eq!(
        parse(&format!("fd7a::1:{token}")),
        ConnectionStringError::UnbracketedIpv6("fd7a::1".into())
    );
    assert_eq!(
        parse(&format!("10.0.0.1:15820:{token}")),
        ConnectionStringError::PortInAddress("10.0.0.1:15820".into())
    );
    assert_eq!(
        parse(&format!("[::1]:15820:{token}")),
        ConnectionStringError::PortInAddress("[::1]:15820".into())
    );
    assert_eq!(
        parse("10.0.0.1:short"),
        ConnectionStringError::BadToken(TokenError::Length { found: 5 })
    );
    // Error messages never contain the token.
    let error = parse(&format!("300.1.1.1:{token}")).to_string();
    assert!(!error.contains(&token), "{error}");
}
