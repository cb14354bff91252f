//! The packed-send format: small frames that JavaScript queues within one tick travel to
//! the connection in one buffer and one call ([`crate::socket::Command::Batch`]), saving a
//! call and an allocation per message.

/// Bytes before each payload in a [`Command::Batch`]: flags (`0x80` FIN | opcode), payload
/// length (u32, big-endian), callback id (u32, big-endian, 0 for none).
pub const BATCH_HEADER: usize = 9;

/// Calls `f(opcode, fin, payload, ack)` for each frame of a batch; false if it is malformed
/// (the frames before the fault are still passed).
pub fn for_each_batched(data: &[u8], mut f: impl FnMut(u8, bool, &[u8], u32)) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        let Some(h) = rest.get(..BATCH_HEADER) else {
            return false;
        };
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let ack = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        let Some(payload) = rest.get(BATCH_HEADER..BATCH_HEADER + len) else {
            return false;
        };
        f(h[0] & 0x0f, h[0] & 0x80 != 0, payload, ack);
        rest = &rest[BATCH_HEADER + len..];
    }
    true
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
        let mut seen = Vec::new();
        assert!(for_each_batched(&b, |op, fin, p, ack| seen.push((
            op,
            fin,
            p.to_vec(),
            ack
        ))));
        assert_eq!(
            seen,
            vec![(1, true, b"hi".to_vec(), 3), (2, false, vec![], 0)]
        );
        b.truncate(b.len() - 1);
        let mut n = 0;
        assert!(!for_each_batched(&b, |_, _, _, _| n += 1));
        assert_eq!(n, 1);
        assert!(!for_each_batched(
            &[0x81, 0, 0, 0, 9, 0, 0, 0, 0, 1],
            |_, _, _, _| {}
        ));
    }
}
