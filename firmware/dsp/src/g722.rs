//! ITU-T G.722 (11/88, with the 09/2012 edition's bit-exact arithmetic) sub-band ADPCM
//! wideband codec at 64, 56 and 48 kbit/s: 16 kHz linear PCM in, one byte per sample pair
//! out (6 bits lower band, 2 bits higher band), and back.
