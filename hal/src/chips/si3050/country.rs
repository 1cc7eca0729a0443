//! Per-country line settings of the Si3050 + Si3018/19 DAA.
//!
//! The fields are the bits of the datasheet's "Country Specific Register
//! Settings" table (Si3050 + Si3011/18/19 datasheet Rev. 1.5, §5.7-5.16: DC
//! termination, AC termination, ringer impedance and threshold, on-hook
//! speed): OHS and RZ/RT in register 16, OHS2 in register 31, DCV/MINI/ILIM in
//! register 26, ACIM in register 30. The values were cross-checked against
//! the mode table DAHDI ships for the same chipset (`fxo_modes.h`); CTR21 sets
//! OHS2 because the datasheet's on-hook speed table gives "OHS=0, OHS2=1:
//! 3 ms, meets ETSI". Ring validation (register 24 RNGV) is on everywhere so
//! that a single spike never looks like a ring.
//!
//! To add a country: one row in [`COUNTRIES`] and a code in [`Country::from_code`].

use super::regs;

/// A country (or regulatory regime) the DAA can be set up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Country {
    /// USA/Canada, FCC part 68.
    Fcc,
    /// ETSI TBR21 / CTR21 (the EU default).
    Ctr21,
    Uk,
    De,
    Fr,
    Au,
    Jp,
}

/// A country code that is not in the table (see [`Country::from_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCountry;

impl core::fmt::Display for UnknownCountry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unknown country code (known: US, CA, FCC, CTR21, TBR21, EU, UK, GB, DE, FR, AU, JP)")
    }
}

impl core::str::FromStr for Country {
    type Err = UnknownCountry;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Country::parse(s)
    }
}

/// Register bits for one country.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountryParams {
    pub country: Country,
    pub name: &'static str,
    /// Register 16 bit 6: on-hook speed.
    pub ohs: bool,
    /// Register 31 bit 3: on-hook speed 2 (ETSI 3 ms).
    pub ohs2: bool,
    /// Register 16 bit 1: synthesized ringer impedance.
    pub rz: bool,
    /// Register 16 bit 0: ring threshold (0: 13.5-16.5 Vrms, 1: 19.35-23.65 Vrms).
    pub rt: bool,
    /// Register 26 bit 1: 60 mA loop current limit (TBR21).
    pub ilim: bool,
    /// Register 26 bits 7:6: TIP/RING voltage adjust.
    pub dcv: u8,
    /// Register 26 bits 5:4: minimum operational loop current.
    pub mini: u8,
    /// Register 30 bits 3:0: AC termination impedance.
    pub acim: u8,
    /// Register 24 bit 7: ring validation.
    pub ring_validation: bool,
    /// Register 18 bit 1: full-wave ring detector.
    pub ring_full_wave: bool,
}

const fn row(country: Country, name: &'static str) -> CountryParams {
    CountryParams {
        country,
        name,
        ohs: false,
        ohs2: false,
        rz: false,
        rt: false,
        ilim: false,
        dcv: 0,
        mini: 0,
        acim: 0,
        ring_validation: true,
        ring_full_wave: false,
    }
}

/// The country table.
pub const COUNTRIES: [CountryParams; 7] = [
    // 600 ohm real, ring threshold raised for FCC.
    CountryParams { rt: true, dcv: 3, ..row(Country::Fcc, "FCC") },
    // 270 + (750 || 150 nF), 60 mA limit.
    CountryParams { ohs2: true, ilim: true, dcv: 3, acim: 2, ..row(Country::Ctr21, "CTR21") },
    // The UK's own complex impedance (ACIM 5).
    CountryParams { ohs2: true, ilim: true, dcv: 3, acim: 5, ..row(Country::Uk, "UK") },
    // Germany's complex impedance (ACIM 3, shared with AU).
    CountryParams { ohs2: true, ilim: true, dcv: 3, acim: 3, ..row(Country::De, "DE") },
    CountryParams { ohs2: true, ilim: true, dcv: 3, acim: 2, ..row(Country::Fr, "FR") },
    // Slow on-hook (OHS) for spark quenching, highest minimum loop current.
    CountryParams { ohs: true, mini: 3, acim: 3, ..row(Country::Au, "AU") },
    CountryParams { mini: 3, ..row(Country::Jp, "JP") },
];

impl Country {
    /// Parses a country code, case-insensitive: `US`/`CA`/`FCC`, `CTR21`/`TBR21`/`EU`,
    /// `UK`/`GB`, `DE`, `FR`, `AU`, `JP`. `None` for anything else.
    pub fn from_code(code: &str) -> Option<Country> {
        const CODES: [(&str, Country); 13] = [
            ("US", Country::Fcc),
            ("CA", Country::Fcc),
            ("FCC", Country::Fcc),
            ("CTR21", Country::Ctr21),
            ("TBR21", Country::Ctr21),
            ("EU", Country::Ctr21),
            ("UK", Country::Uk),
            ("GB", Country::Uk),
            ("DE", Country::De),
            ("FR", Country::Fr),
            ("AU", Country::Au),
            ("JP", Country::Jp),
            ("JA", Country::Jp),
        ];
        let code = code.trim();
        CODES.iter().find(|(c, _)| c.eq_ignore_ascii_case(code)).map(|&(_, k)| k)
    }

    /// Like [`Country::from_code`], with an error that says what was wrong.
    pub fn parse(code: &str) -> Result<Country, UnknownCountry> {
        Country::from_code(code).ok_or(UnknownCountry)
    }

    /// This country's row of [`COUNTRIES`].
    pub fn params(self) -> &'static CountryParams {
        // Every variant has a row (checked by a test); the fallback is never taken.
        COUNTRIES.iter().find(|p| p.country == self).unwrap_or(&COUNTRIES[0])
    }
}

impl CountryParams {
    /// Register 16 value.
    pub fn reg16(&self) -> u8 {
        (if self.ohs { regs::INTL_CTRL1_OHS } else { 0 })
            | (if self.rz { regs::INTL_CTRL1_RZ } else { 0 })
            | (if self.rt { regs::INTL_CTRL1_RT } else { 0 })
    }

    /// Register 26 value.
    pub fn reg26(&self) -> u8 {
        ((self.dcv & 3) << 6) | ((self.mini & 3) << 4) | if self.ilim { regs::DC_TERM_ILIM } else { 0 }
    }

    /// Register 30 value.
    pub fn reg30(&self) -> u8 {
        self.acim & 0x0F
    }

    /// Register 31 value: 128 ms fast off-hook counter (the reset default),
    /// 200 Hz receive high-pass (keeps the loop's DC steps out of the PCM),
    /// plus OHS2.
    pub fn reg31(&self) -> u8 {
        regs::DAA_CTRL4_FOH_128MS | regs::DAA_CTRL4_FILT | if self.ohs2 { regs::DAA_CTRL4_OHS2 } else { 0 }
    }

    /// Register 18 value.
    pub fn reg18(&self) -> u8 {
        if self.ring_full_wave {
            regs::INTL_CTRL3_RFWE
        } else {
            0
        }
    }
}
