use serde::{Deserialize, Deserializer};

/// Deserialize an optional percentage.
pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.map(|v| v.clamp(0.0, 100.0) as f32))
}

#[cfg(test)]
mod tests;
