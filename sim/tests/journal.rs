//! The journal replay (`chinwag-sim --journal FILE`) on journals built here
//! with the production encoder: a good run passes with its counts, a
//! damaged one replays up to the damage, and an input that breaks the
//! broker's legal-input contract reproduces the panic at its record.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use chinwag::broker::{ConnId, Input};
use chinwag::config::Config;
use chinwag::journal::{EndReason, Problem, encode_end, encode_header, encode_input};
use chinwag::news::Dialect;
use chinwag::time::Time;
use chinwag_sim::journal::{Unreplayable, replay};

fn journal(inputs: &[Input], end: Option<EndReason>) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_header(&Config::default(), &mut bytes);
    let at = |i: usize| Time::from_origin(Duration::from_millis(i as u64));
    for (i, input) in inputs.iter().enumerate() {
        encode_input(at(i.saturating_sub(1)), at(i), input, &mut bytes);
    }
    if let Some(reason) = end {
        let last = inputs.len().saturating_sub(1);
        encode_end(at(last), at(last), reason, &mut bytes);
    }
    bytes
}

fn conversation() -> Vec<Input> {
    let opened = |conn| Input::Opened {
        conn: ConnId(conn),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        dialect: Dialect::Line,
    };
    let line = |conn, text: &str| Input::Line {
        conn: ConnId(conn),
        frame: Ok(text.to_string()),
    };
    vec![
        opened(1),
        line(1, "alice"),
        opened(2),
        line(2, "bob"),
        line(1, "bob: hi"),
        line(2, "alice, ghost: hello"),
        Input::Flushed {
            conn: ConnId(1),
            bytes: 10,
        },
        Input::Shutdown,
    ]
}

#[test]
fn a_good_journal_passes_and_says_what_it_held() {
    let Ok(replayed) = replay(&journal(&conversation(), Some(EndReason::Stopped))) else {
        panic!("the journal replays");
    };
    assert_eq!(replayed.inputs, 8);
    assert_eq!(replayed.end, Some(EndReason::Stopped));
    assert!(replayed.damage.is_none());
    let coverage = replayed.verdict.expect("every guarantee holds");
    assert_eq!(coverage.messages, 2);
    // Two welcomes, two deliveries, an error and two shutdown notices.
    assert_eq!(coverage.outputs[0], 7, "sends");
}

#[test]
fn a_journal_cut_short_replays_up_to_the_cut() {
    let mut bytes = journal(&conversation(), None);
    bytes.truncate(bytes.len() - 1);
    let Ok(replayed) = replay(&bytes) else {
        panic!("the journal replays");
    };
    assert_eq!(replayed.inputs, 7);
    assert_eq!(replayed.end, None);
    assert_eq!(replayed.damage.map(|d| d.problem), Some(Problem::CutShort));
    assert!(replayed.verdict.is_ok());
}

#[test]
fn an_input_that_breaks_the_brokers_contract_panics_at_its_record() {
    let mut inputs = conversation();
    // More flushed than was ever queued for bob.
    inputs.insert(
        5,
        Input::Flushed {
            conn: ConnId(2),
            bytes: 1_000_000,
        },
    );
    match replay(&journal(&inputs, None)) {
        Err(Unreplayable::BrokerPanicked { index, .. }) => assert_eq!(index, 5),
        _ => panic!("the broker's contract check should have fired"),
    }
}

#[test]
fn bytes_that_are_not_a_journal_are_refused() {
    assert!(matches!(
        replay(b"PK\x03\x04 a zip file"),
        Err(Unreplayable::Header(_))
    ));
}
