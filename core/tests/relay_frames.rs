//! The relay emulator's frame forwarding on generated input: `frame::parse_header` as the
//! relay calls it (`Expect { masked: true, .. }`) and `relay::forward::FrameRewriter`. Masked
//! client frames cut anywhere unmask to exactly the server frames; any byte stream gives
//! frames or an error with a close code, the same however it is cut, and never a panic.

mod common;

use hyco_core::relay::forward::FrameRewriter;
use hyco_core::socket::frame::{parse_header, Expect, FrameHeader};
use hyco_core::socket::SocketError;
use proptest::prelude::*;
use proptest::sample::Index;

use common::{cases, reads};

/// Cases per property per `cargo test`.
const CASES: u32 = 3000;

/// What the relay expects of a frame (as `relay::forward` passes it).
const RELAY: Expect = Expect {
    masked: true,
    rsv1: false,
    fragmented: None,
};

/// The longest frame header: 2 bytes, a 64-bit length, a mask.
const MAX_HEADER: usize = 14;

/// A client frame the relay passes on.
#[derive(Debug, Clone)]
struct ClientFrame {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// The length's form: 0 shortest, 1 16-bit, 2 64-bit (data frames only: ws refuses a
    /// control frame whose 7-bit length is not its length).
    form: u8,
    payload: Vec<u8>,
}

impl ClientFrame {
    /// The masked frame, and the unmasked server frame the relay must make of it: the same
    /// header (length as written) without the mask bit and key, the payload unmasked.
    fn wire(&self) -> (Vec<u8>, Vec<u8>) {
        let len = self.payload.len();
        let b0 = u8::from(self.fin) << 7 | self.opcode;
        let (len7, ext): (u8, Vec<u8>) = match self.form {
            0 if len < 126 => (len as u8, vec![]),
            0 | 1 if len <= 0xffff => (126, (len as u16).to_be_bytes().to_vec()),
            _ => (127, (len as u64).to_be_bytes().to_vec()),
        };
        let mut client = vec![b0, 0x80 | len7];
        client.extend_from_slice(&ext);
        client.extend_from_slice(&self.mask);
        client.extend(
            self.payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ self.mask[i % 4]),
        );
        let mut server = vec![b0, len7];
        server.extend_from_slice(&ext);
        server.extend_from_slice(&self.payload);
        (client, server)
    }
}

fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..=max.min(40)),
        1 => (0..=max, any::<u8>()).prop_map(|(n, s)| {
            (0..n).map(|i| (i as u8).wrapping_mul(7).wrapping_add(s)).collect()
        }),
    ]
}

/// Frames a client may send through the relay: any data frame (the relay does not follow
/// messages, so continuations go anywhere), control frames final and short, close frames
/// not of one byte.
fn client_frame() -> impl Strategy<Value = ClientFrame> {
    let data = (
        prop::sample::select(vec![0u8, 1, 2]),
        any::<bool>(),
        any::<[u8; 4]>(),
        0u8..3,
        prop_oneof![
            8 => payload(300),
            1 => prop::sample::select(vec![125usize, 126, 127, 65535, 65536])
                .prop_map(|n| vec![0x5a; n]),
        ],
    )
        .prop_map(|(opcode, fin, mask, form, payload)| ClientFrame {
            fin,
            opcode,
            mask,
            form,
            payload,
        });
    let control = (
        prop::sample::select(vec![8u8, 9, 10]),
        any::<[u8; 4]>(),
        payload(125),
    )
        .prop_map(|(opcode, mask, mut payload)| {
            if opcode == 8 && payload.len() == 1 {
                payload.push(0);
            }
            ClientFrame {
                fin: true,
                opcode,
                mask,
                form: 0,
                payload,
            }
        });
    prop_oneof![3 => data, 1 => control]
}

/// Runs a rewriter over `reads` as the relay's forwarding does (what a read leaves, an
/// incomplete header, goes again with the next); the output, whether a close frame went
/// through, and the error if one came.
fn rewrite(reads: &[&[u8]]) -> (Vec<u8>, bool, Option<SocketError>) {
    let mut rw = FrameRewriter::default();
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for r in reads {
        pending.extend_from_slice(r);
        match rw.process(&pending, &mut out) {
            Ok(used) => {
                assert!(used <= pending.len());
                pending.drain(..used);
                // What is left is an incomplete header, never a payload held back.
                assert!(pending.len() < MAX_HEADER, "{} bytes held", pending.len());
            }
            Err(e) => return (out, rw.close_seen, Some(e)),
        }
    }
    (out, rw.close_seen, None)
}

/// A byte stream for robustness: random bytes, or valid client frames with bytes changed.
fn any_stream() -> impl Strategy<Value = Vec<u8>> {
    let noise = prop::collection::vec(any::<u8>(), 0..200);
    let damaged = (
        prop::collection::vec(client_frame(), 0..6),
        prop::collection::vec((any::<Index>(), any::<u8>()), 1..4),
    )
        .prop_map(|(frames, hits)| {
            let mut w: Vec<u8> = frames.iter().flat_map(|f| f.wire().0).collect();
            if !w.is_empty() {
                for (at, x) in hits {
                    let i = at.index(w.len());
                    w[i] ^= x;
                }
            }
            w
        });
    prop_oneof![noise, damaged]
}

proptest! {
    #![proptest_config(cases(CASES))]

    /// Masked client frames, cut anywhere, come out as exactly the unmasked server frames.
    #[test]
    fn client_frames_unmask_to_server_frames(
        frames in prop::collection::vec(client_frame(), 0..8),
        reads in reads(),
    ) {
        let (mut client, mut server) = (Vec::new(), Vec::new());
        for f in &frames {
            let (c, s) = f.wire();
            client.extend(c);
            server.extend(s);
        }
        let (out, close_seen, err) = rewrite(&reads.split(&client));
        prop_assert!(err.is_none(), "{err:?}");
        prop_assert!(out == server, "the output differs from the server frames");
        prop_assert_eq!(close_seen, frames.iter().any(|f| f.opcode == 8));
    }

    /// Any byte stream gives server frames or a protocol error with a close code, and the
    /// same, byte for byte, however it is cut into reads.
    #[test]
    fn any_stream_is_frames_or_a_protocol_error(wire in any_stream(), reads in reads()) {
        let whole = rewrite(&[&wire]);
        let cut = rewrite(&reads.split(&wire));
        if let Some(e) = &whole.2 {
            let code = e.code.expect("a protocol error has a code");
            prop_assert!(code.starts_with("WS_ERR_"), "{}", code);
            prop_assert_eq!(e.close_code, Some(1002));
        }
        prop_assert!(whole.0 == cut.0, "the output depends on the reads");
        prop_assert_eq!(whole.1, cut.1);
        prop_assert_eq!(whole.2.map(|e| e.code), cut.2.map(|e| e.code));
    }

    /// `parse_header` on any bytes, for either role: more bytes wanted only while the header
    /// is incomplete; a header that fits what it was given; an error with a code and a close
    /// code; and every prefix of a header that parses wants more bytes or gives the same.
    #[test]
    fn parse_header_is_total_and_prefix_stable(
        buf in prop::collection::vec(any::<u8>(), 0..20),
        masked in any::<bool>(),
        rsv1 in any::<bool>(),
        fragmented in prop::option::of(any::<bool>()),
    ) {
        let expect = Expect { masked, rsv1, fragmented };
        let full = parse_header(&buf, expect);
        match &full {
            Ok(None) => prop_assert!(buf.len() < MAX_HEADER),
            Ok(Some(h)) => {
                prop_assert!(h.size <= buf.len());
                let ext = match buf[1] & 0x7f { 126 => 2, 127 => 8, _ => 0 };
                prop_assert_eq!(h.size, 2 + ext + if h.mask.is_some() { 4 } else { 0 });
                prop_assert_eq!(h.mask.is_some(), masked);
                prop_assert_eq!(h.opcode, buf[0] & 0x0f);
                prop_assert_eq!(h.fin, buf[0] & 0x80 != 0);
            }
            Err(e) => {
                prop_assert!(e.code.is_some_and(|c| c.starts_with("WS_ERR_")));
                prop_assert!(e.close_code.is_some());
                prop_assert!(!e.message.is_empty());
            }
        }
        for n in 0..buf.len() {
            let part = parse_header(&buf[..n], expect);
            let same = match (&part, &full) {
                (Ok(None), _) => true,
                (Ok(Some(a)), Ok(Some(b))) => a == b,
                (Err(a), Err(b)) => a.code == b.code,
                _ => false,
            };
            prop_assert!(same, "prefix {}: {:?}, whole: {:?}", n, part, full);
        }
    }

    /// The header of a generated client frame, as the relay reads it: the fields it was
    /// written with.
    #[test]
    fn parse_header_reads_client_frames(f in client_frame()) {
        let (client, _) = f.wire();
        let h: FrameHeader = parse_header(&client, RELAY)
            .map_err(|e| TestCaseError::fail(e.message))?
            .expect("a whole header");
        prop_assert_eq!(h.fin, f.fin);
        prop_assert_eq!(h.opcode, f.opcode);
        prop_assert_eq!(h.mask, Some(f.mask));
        prop_assert_eq!(h.len, f.payload.len() as u64);
        prop_assert_eq!(h.size, client.len() - f.payload.len());
        // Unmasked, the same frame is refused: the relay takes client frames only.
        let mut unmasked = client.clone();
        unmasked[1] &= 0x7f;
        let e = parse_header(&unmasked, RELAY).expect_err("an unmasked frame");
        prop_assert_eq!(e.code, Some("WS_ERR_EXPECTED_MASK"));
    }

    /// A 64-bit length is passed on as written, unless its most significant bit is set
    /// (RFC 6455 section 5.2): then the stream is refused (1002).
    #[test]
    fn sixty_four_bit_lengths_pass_unless_too_large(
        len in prop_oneof![any::<u64>(), (0u64..=20).prop_map(|s| (1u64 << 63) - 10 + s)],
        opcode in prop::sample::select(vec![0u8, 1, 2]),
        mask in any::<[u8; 4]>(),
    ) {
        let mut client = vec![0x80 | opcode, 0x80 | 127];
        client.extend_from_slice(&len.to_be_bytes());
        client.extend_from_slice(&mask);
        let (out, _, err) = rewrite(&[&client]);
        if len >> 63 != 0 {
            let e = err.expect("a length of 2^63 or more is refused");
            prop_assert_eq!(e.code, Some("WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH"));
            prop_assert_eq!(e.close_code, Some(1002));
        } else {
            prop_assert!(err.is_none(), "{:?}", err);
            prop_assert_eq!(out, client[..10].iter().enumerate().map(|(i, b)| if i == 1 { b & 0x7f } else { *b }).collect::<Vec<u8>>());
        }
    }
}
