//! The unpickler on hand-made pickles: what it reads, and every trick it must refuse cheaply.
use super::*;

/// A tiny state dict as torch.save writes it (protocol 2): {'w': tensor of 2 floats}.
fn state_dict_pickle() -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}', b'q', 0, b'('];
    p.extend(b"X\x01\x00\x00\x00w");
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n");
    p.extend(b"((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02tQ");
    p.extend(b"K\x00K\x02\x85K\x01\x85\x89}tR");
    p.extend(b"u.");
    p
}

#[test]
fn reads_a_state_dict_entry_as_a_tensor_description() {
    let out = unpickle(&state_dict_pickle()).expect("valid pickle");
    let entries = out.dict(out.root()).expect("root is a dict");
    assert_eq!(entries.len(), 1);
    let (Value::Str(name), Value::Tensor(tensor)) = &entries[0] else {
        panic!("unexpected entry {:?}", entries[0]);
    };
    assert_eq!(&**name, "w");
    assert_eq!(
        **tensor,
        TensorRef {
            storage_key: "0".into(),
            dtype: StorageType::F32,
            offset: 0,
            size: vec![2],
            stride: vec![1],
        }
    );
}

#[test]
fn refuses_a_global_outside_the_allowlist_at_once() {
    let p = b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00lsK".to_vec();
    assert_eq!(
        unpickle(&p).expect_err("refused"),
        PickleError::Forbidden("posix.system".into())
    );
    let stacked = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.".to_vec();
    assert_eq!(
        unpickle(&stacked).expect_err("refused"),
        PickleError::Forbidden("builtins.eval".into())
    );
}

#[test]
fn every_truncation_of_a_valid_pickle_is_an_error_not_a_panic() {
    let p = state_dict_pickle();
    for len in 0..p.len() {
        assert!(
            unpickle(&p[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
}

#[test]
fn memo_sharing_does_not_copy_containers() {
    // 30 rounds of "t = (t, t)" through the memo would be 2^30 values if copied.
    let mut p = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..30 {
        p.extend([b'h', 0, b'h', 0, 0x86, b'q', 0, b'0']);
    }
    p.extend([b'h', 0, b'.']);
    assert!(matches!(
        unpickle(&p).expect("valid").root(),
        Value::Tuple(_)
    ));
}

#[test]
fn deep_nesting_and_calls_on_shared_structures_fail_fast() {
    // 10,000 nested 1-tuples would overflow the stack when dropped.
    let mut deep = vec![0x80, 2, b')'];
    deep.extend([0x85; 10_000]);
    deep.push(b'.');
    let err = unpickle(&deep).expect_err("refused");
    assert!(err.to_string().contains("nested deeper"), "{err}");
    // A call on a 2^30-leaf shared tuple is refused without describing the tuple.
    let mut call = vec![0x80, 2, b')', b'q', 0, b'0'];
    for _ in 0..30 {
        call.extend([b'h', 0, b'h', 0, 0x86, b'q', 0, b'0']);
    }
    call.extend([b'h', 0, b')', b'R', b'.']);
    let err = unpickle(&call).expect_err("refused");
    assert!(
        err.to_string().contains("unexpected call of a tuple"),
        "{err}"
    );
}

#[test]
fn huge_declared_lengths_and_memo_indices_are_refused_cheaply() {
    let long_string = b"\x80\x02X\xff\xff\xff\xffabc".to_vec();
    assert!(matches!(
        unpickle(&long_string),
        Err(PickleError::Malformed { .. })
    ));
    let memo = b"\x80\x02Nr\xff\xff\xff\xffj\xff\xff\xff\xff.".to_vec();
    assert_eq!(unpickle(&memo).expect("valid").root(), &Value::None);
    let unknown = b"\x80\x02i\n".to_vec(); // INST: unsupported
    assert!(unpickle(&unknown).is_err());
}
