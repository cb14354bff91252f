//! The packed-send format: small frames that JavaScript queues within one tick travel to
//! the connection in one buffer and one call ([`crate::socket::Command::Batch`]), saving a
//! call and an allocation per message.

/// Bytes before each payload in a [`Command::Batch`]: flags (`0x80` FIN | [`COMPRESS`] |
/// opcode), payload length (u32, big-endian), callback id (u32, big-endian, 0 for none).
pub const BATCH_HEADER: usize = 9;

/// The flags bit that asks for the frame to be compressed (where RSV1 sits in a frame's
/// first byte; whether it is compressed is decided as for [`crate::socket::Command::Frame`]'s
/// `compress`).
pub const COMPRESS: u8 = 0x40;

/// One frame of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batched<'a> {
    /// The opcode.
    pub opcode: u8,
    /// Final fragment.
    pub fin: bool,
    /// Compress it, if permessage-deflate is agreed.
    pub compress: bool,
    /// The payload.
    pub payload: &'a [u8],
    /// Callback id, 0 for none.
    pub ack: u32,
}

/// Calls `f` for each frame of a batch; false if it is malformed (the frames before the
/// fault are still passed).
pub fn for_each_batched(data: &[u8], mut f: impl FnMut(Batched<'_>)) -> bool {
    batched_until(data, |b| {
        f(b);
        true
    })
    .1
}

/// Calls `f` for each frame of a batch until it returns false: the bytes of the frames
/// passed (where the rest, itself a batch, begins), and false if the batch is malformed
/// (the frames before the fault are still passed).
pub fn batched_until(data: &[u8], mut f: impl FnMut(Batched<'_>) -> bool) -> (usize, bool) {
    let mut rest = data;
    while !rest.is_empty() {
        let Some(h) = rest.get(..BATCH_HEADER) else {
            return (data.len() - rest.len(), false);
        };
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let ack = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        let Some(payload) = rest.get(BATCH_HEADER..BATCH_HEADER + len) else {
            return (data.len() - rest.len(), false);
        };
        let more = f(Batched {
            opcode: h[0] & 0x0f,
            fin: h[0] & 0x80 != 0,
            compress: h[0] & COMPRESS != 0,
            payload,
            ack,
        });
        rest = &rest[BATCH_HEADER + len..];
        if !more {
            break;
        }
    }
    (data.len() - rest.len(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(out: &mut Vec<u8>, flags: u8, payload: &[u8], ack: u32) {
        out.push(flags);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&ack.to_be_bytes());
        out.extend_from_slice(payload);
    }

    #[test]
    fn batches_unpack_and_refuse_truncation() {
        let mut b = Vec::new();
        item(&mut b, 0x81, b"hi", 3);
        item(&mut b, 0x02, b"", 0);
        item(&mut b, 0xc1, b"z", 0);
        let mut seen = Vec::new();
        assert!(for_each_batched(&b, |f| seen.push((
            f.opcode,
            f.fin,
            f.compress,
            f.payload.to_vec(),
            f.ack
        ))));
        assert_eq!(
            seen,
            vec![
                (1, true, false, b"hi".to_vec(), 3),
                (2, false, false, vec![], 0),
                (1, true, true, b"z".to_vec(), 0)
            ]
        );
        b.truncate(b.len() - 1);
        let mut n = 0;
        assert!(!for_each_batched(&b, |_| n += 1));
        assert_eq!(n, 2);
        assert!(!for_each_batched(
            &[0x81, 0, 0, 0, 9, 0, 0, 0, 0, 1],
            |_| {}
        ));
    }
}
