//! Shared by the line-condition tests (`tests/line_conditions.rs`) and the benches
//! (`benches/echo.rs`, `benches/detectors.rs`, through `#[path]`): the G.168 Annex D
//! hybrids, the line (bulk delay, hybrid, G.711 µ-law both ways, line noise), levels, and
//! synthetic speech made at run time with espeak-ng (Debian `espeak-ng`, installed by
//! `tools/test`) in several languages and voices.
//!
//! Nothing here is timed; everything is deterministic for a given espeak-ng version.
#![allow(dead_code)] // each user takes what it needs

use gw_dsp::g711::{self, Law};
use gw_dsp::testsig::Noise;
use std::process::Command;

/// Mean power of a 0 dBm0 sine (SpanDSP convention, `gw_dsp::DBM0_PEAK`).
pub const P_0DBM0: f64 = 22826.0 * 22826.0 / 2.0;

/// G.168 Annex D hybrid models D.2-D.9 from `testdata/g168_models.txt`.
pub fn models() -> Vec<(String, Vec<f32>)> {
    let text = include_str!("../../testdata/g168_models.txt");
    let mut out: Vec<(String, Vec<f32>)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        if line.starts_with("model") {
            it.next();
            out.push((it.next().unwrap().into(), Vec::new()));
        } else {
            out.last_mut().unwrap().1.extend(it.map(|v| v.parse::<f32>().unwrap()));
        }
    }
    out
}

/// One pass through a G.711 µ-law codec (encode, decode).
pub fn law(x: f32) -> i16 {
    let s = x.round().clamp(-32768.0, 32767.0) as i16;
    g711::decode(Law::Ulaw, g711::encode(Law::Ulaw, s))
}

pub fn ulaw_file(bytes: &[u8]) -> Vec<i16> {
    bytes.iter().map(|&b| g711::decode(Law::Ulaw, b)).collect()
}

/// Mean power of a signal.
pub fn power(x: impl IntoIterator<Item = f32>) -> f64 {
    let (mut s, mut n) = (0.0f64, 0usize);
    for v in x {
        s += (v as f64) * (v as f64);
        n += 1;
    }
    s / n.max(1) as f64 + 1e-6
}

pub fn db(x: f64) -> f64 {
    10.0 * x.log10()
}

pub fn level_dbm0(x: impl IntoIterator<Item = f32>) -> f64 {
    db(power(x) / P_0DBM0)
}

/// Active speech level (ITU-T P.56 in spirit): mean power over the 16 ms frames within
/// 35 dB of the loudest one, so pauses do not count.
pub fn active_level_dbm0(x: &[f32]) -> f64 {
    let frames: Vec<f64> = x.chunks(128).map(|c| power(c.iter().copied())).collect();
    let max = frames.iter().cloned().fold(0.0, f64::max);
    let act: Vec<f64> = frames.into_iter().filter(|&p| p > max * 10f64.powf(-3.5)).collect();
    db(act.iter().sum::<f64>() / act.len().max(1) as f64 / P_0DBM0)
}

/// `x` scaled to an active speech level.
pub fn at_active_level(x: &[f32], dbm0: f64) -> Vec<f32> {
    let g = 10f64.powf((dbm0 - active_level_dbm0(x)) / 20.0) as f32;
    x.iter().map(|v| v * g).collect()
}

/// White Gaussian noise at a mean level.
pub fn white_noise(seed: u64, n: usize, dbm0: f64) -> Vec<f32> {
    let mut g = Noise::new(seed);
    let sigma = (P_0DBM0 * 10f64.powf(dbm0 / 10.0)).sqrt() as f32;
    (0..n).map(|_| sigma * g.gauss()).collect()
}

/// The echo of `far` (what is sent to the line) through `model` after `delay` samples,
/// scaled so that the echo return loss measured on `far` itself is `erl_db` (as G.168
/// measures it: with the test signal).
pub fn echo_of(model: &[f32], delay: usize, erl_db: f64, far: &[i16]) -> Vec<f32> {
    let raw: Vec<f32> = (0..far.len())
        .map(|i| {
            let mut y = 0.0f32;
            for (k, h) in model.iter().enumerate() {
                if i >= delay + k {
                    y += h * far[i - delay - k] as f32;
                }
            }
            y
        })
        .collect();
    let g = ((power(far.iter().map(|&v| v as f32)) / power(raw.iter().copied())) * 10f64.powf(-erl_db / 10.0)).sqrt() as f32;
    raw.into_iter().map(|v| v * g).collect()
}

/// What the canceller's near-end input is: echo plus near-end signal through µ-law.
pub fn near_in(echo: &[f32], near: &[f32]) -> Vec<i16> {
    echo.iter().zip(near).map(|(e, s)| law(e + s)).collect()
}

/// Whether espeak-ng can be run.
pub fn espeak_available() -> bool {
    Command::new("espeak-ng").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

/// `text` spoken by espeak-ng with `voice` (e.g. `fr+f3`), words per minute and pitch
/// (0-99), at 8 kHz. None when espeak-ng is missing or fails.
pub fn espeak(voice: &str, wpm: u32, pitch: u32, text: &str) -> Option<Vec<f32>> {
    let out = Command::new("espeak-ng")
        .args(["-v", voice, "-s", &wpm.to_string(), "-p", &pitch.to_string(), "--stdout", text])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let wav = out.stdout;
    // RIFF header: the sample rate at byte 24; data after the "data" chunk header (the
    // size fields are not filled in on a pipe).
    if wav.len() < 44 || &wav[..4] != b"RIFF" {
        return None;
    }
    let rate = u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]);
    let data = wav.windows(4).position(|w| w == b"data")? + 8;
    let pcm: Vec<f32> = wav[data..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32).collect();
    Some(resample(&pcm, rate, 8000))
}

/// Band-limited resampling (windowed sinc, 3.6 kHz cut-off for an 8 kHz output).
pub fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return x.to_vec();
    }
    const HALF: i64 = 24;
    let ratio = from as f64 / to as f64;
    let fc = 3600.0f64.min(0.45 * to.min(from) as f64) / from as f64; // cycles per input sample
    let n_out = (x.len() as f64 / ratio) as usize;
    let mut y = Vec::with_capacity(n_out);
    for n in 0..n_out {
        let t = n as f64 * ratio;
        let c = t.floor() as i64;
        let mut acc = 0.0f64;
        for k in c - HALF + 1..=c + HALF {
            if k < 0 || k as usize >= x.len() {
                continue;
            }
            let u = t - k as f64;
            let w = 0.5 + 0.5 * (std::f64::consts::PI * u / HALF as f64).cos();
            let s = if u.abs() < 1e-9 { 1.0 } else { (2.0 * std::f64::consts::PI * fc * u).sin() / (std::f64::consts::PI * u) / (2.0 * fc) };
            acc += x[k as usize] as f64 * 2.0 * fc * s * w;
        }
        y.push(acc as f32);
    }
    y
}

/// Sentences per language for the talk-off corpus and the echo benches' talkers.
pub const TEXTS: [(&str, &str); 8] = [
    ("en-us", "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. It is easy to tell the depth of a well. These days a chicken leg is a rare dish. Rice is often served in round bowls. The juice of lemons makes fine punch. The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage. Four hours of steady work faced us. A large size in stockings is hard to sell."),
    ("fr-fr", "Le petit chat dort sur le canapé depuis ce matin. Nous avons pris le train de sept heures pour aller à Lyon. Il faut absolument que tu viennes dîner samedi soir. Les enfants jouent dans le jardin pendant que la pluie tombe. Je voudrais réserver une table pour quatre personnes, s'il vous plaît. Le boulanger ouvre sa boutique avant le lever du soleil. Pourriez-vous répéter votre numéro de téléphone plus lentement? Cette année, les vendanges ont commencé très tôt en Bourgogne."),
    ("de", "Der Zug nach München fährt heute leider eine halbe Stunde später. Könnten Sie mir bitte sagen, wo die nächste Apotheke ist? Wir haben am Wochenende einen langen Spaziergang im Wald gemacht. Das Wetter soll morgen schön und warm werden. Meine Schwester arbeitet seit drei Jahren in einem kleinen Krankenhaus. Bitte rufen Sie mich später noch einmal zurück."),
    ("es", "El tren de la mañana llegó con veinte minutos de retraso. Mi abuela prepara una paella deliciosa todos los domingos. ¿Podría decirme cuánto cuesta el billete de ida y vuelta? Los niños juegan en la plaza hasta que anochece. Necesito hablar con el director antes del mediodía. La biblioteca cierra a las ocho durante el verano."),
    ("it", "Il treno per Roma parte dal binario numero tre alle nove e mezza. Vorrei prenotare una camera doppia per due notti. Mia madre cucina la pasta fresca ogni domenica. Domani pomeriggio andremo al mare con gli amici. Mi scusi, potrebbe parlare un po' più lentamente? Il museo resta chiuso il lunedì."),
    ("pt", "O autocarro para o centro da cidade passa de quinze em quinze minutos. Gostaria de marcar uma consulta para a próxima semana. Os meus avós vivem numa pequena aldeia perto do rio. Amanhã vamos visitar o castelo com os nossos primos. Pode repetir o número de telefone, por favor?"),
    ("nl", "De trein naar Amsterdam vertrekt over tien minuten van spoor vijf. Wij gaan morgen met de fiets naar het strand. Kunt u mij vertellen hoe laat de winkel dichtgaat? Mijn broer woont al jaren in een klein huis aan de gracht. Het regent vandaag weer de hele dag."),
    ("pl", "Pociąg do Krakowa odjeżdża z peronu drugiego o dziewiątej. Czy mógłby pan powtórzyć numer telefonu? W sobotę pojedziemy z dziećmi nad jezioro. Moja siostra pracuje w dużym szpitalu w centrum miasta. Jutro ma być słonecznie i ciepło."),
];

/// espeak-ng voice variants (male, female, and the Klatt synthesiser) cycled through.
pub const VARIANTS: [&str; 12] = ["", "+f3", "+m3", "+f1", "+m7", "+f4", "+klatt", "+f2", "+m1", "+f5", "+m5", "+klatt3"];

/// A talk-off corpus of at least `seconds` of speech: the texts above in every language,
/// spoken by voices from [`VARIANTS`] at speeds of 120-200 words per minute and pitches
/// 20-90 (deterministic). Each item: (description, 8 kHz samples at their natural level).
/// None when espeak-ng is not there.
pub fn speech_corpus(seconds: f64) -> Option<Vec<(String, Vec<f32>)>> {
    if !espeak_available() {
        return None;
    }
    let mut out = Vec::new();
    let mut total = 0.0;
    let mut i = 0usize;
    while total < seconds {
        let (lang, text) = TEXTS[i % TEXTS.len()];
        let variant = VARIANTS[(i / TEXTS.len() + i) % VARIANTS.len()];
        let wpm = 120 + ((i * 37) % 81) as u32;
        let pitch = 20 + ((i * 53) % 71) as u32;
        let voice = format!("{lang}{variant}");
        let x = espeak(&voice, wpm, pitch, text)?;
        total += x.len() as f64 / 8000.0;
        out.push((format!("{voice} {wpm} wpm pitch {pitch}"), x));
        i += 1;
    }
    Some(out)
}
