//! WAV files as the sim link carries audio: 8 kHz, mono, 16-bit PCM (via `hound`).

use std::path::Path;

use crate::LinesimError;

fn spec() -> hound::WavSpec {
    hound::WavSpec { channels: 1, sample_rate: 8000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int }
}

/// Writes `samples` as an 8 kHz mono 16-bit WAV file.
pub fn write_wav(path: impl AsRef<Path>, samples: &[i16]) -> Result<(), LinesimError> {
    let mut w = hound::WavWriter::create(path.as_ref(), spec()).map_err(|e| LinesimError::Wav(e.to_string()))?;
    for &s in samples {
        w.write_sample(s).map_err(|e| LinesimError::Wav(e.to_string()))?;
    }
    w.finalize().map_err(|e| LinesimError::Wav(e.to_string()))
}

/// Reads an 8 kHz mono 16-bit WAV file; any other format is refused with a
/// message saying what it is.
pub fn read_wav(path: impl AsRef<Path>) -> Result<Vec<i16>, LinesimError> {
    let path = path.as_ref();
    let r = hound::WavReader::open(path).map_err(|e| LinesimError::Wav(format!("{}: {e}", path.display())))?;
    let s = r.spec();
    if s.channels != 1 || s.sample_rate != 8000 || s.bits_per_sample != 16 || s.sample_format != hound::SampleFormat::Int {
        return Err(LinesimError::Wav(format!(
            "{}: {} Hz, {} channel(s), {}-bit {:?}; need 8000 Hz mono 16-bit PCM",
            path.display(),
            s.sample_rate,
            s.channels,
            s.bits_per_sample,
            s.sample_format
        )));
    }
    r.into_samples::<i16>().collect::<Result<Vec<_>, _>>().map_err(|e| LinesimError::Wav(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_refuse_other_formats() {
        let dir = std::env::temp_dir().join(format!("linesim-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.wav");
        let x: Vec<i16> = (0..800).map(|i| ((i * 37) % 2000 - 1000) as i16).collect();
        write_wav(&p, &x).unwrap();
        assert_eq!(read_wav(&p).unwrap(), x);
        let q = dir.join("b.wav");
        let mut w = hound::WavWriter::create(
            &q,
            hound::WavSpec { sample_rate: 16000, ..spec() },
        )
        .unwrap();
        w.write_sample(1i16).unwrap();
        w.finalize().unwrap();
        let e = read_wav(&q).unwrap_err().to_string();
        assert!(e.contains("16000 Hz"), "{e}");
        assert!(matches!(read_wav(dir.join("none.wav")), Err(LinesimError::Wav(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
