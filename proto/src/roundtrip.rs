use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;

/// Serialize, parse back, and compare both the value and its JSON.
pub fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let json = serde_json::to_string(value).expect("serialize");
    let back: T = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(&back, value, "value changed through JSON: {json}");
    assert_eq!(serde_json::to_string(&back).expect("serialize"), json);
}
