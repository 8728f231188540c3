//! Countries and cities: ISO 3166-1 codes with display names and flags, and the inference of
//! a server's location from a file name (`se-sto-wg-001.conf`) or a comment (`# SE#42`).
//!
//! Inference only fills in what a name makes clear. A guess the user disagrees with is
//! corrected with `underpass profile set NAME --country CC --city CITY`, and nothing here is
//! used for security: it only groups servers in the country picker.

use serde::{Deserialize, Serialize};

/// Where a server is. `country` is an upper-case ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
}

impl Location {
    pub fn is_empty(&self) -> bool {
        self.country.is_none() && self.city.is_none()
    }
}

/// The upper-case ISO code, if `code` is one (case-insensitive; `UK` is taken as `GB`).
pub fn normalize_country(code: &str) -> Option<&'static str> {
    let upper = code.trim().to_ascii_uppercase();
    let upper = if upper == "UK" {
        "GB".to_string()
    } else {
        upper
    };
    COUNTRIES.iter().find(|(c, _)| *c == upper).map(|(c, _)| *c)
}

/// The English display name of an ISO code (`SE` → `Sweden`).
pub fn country_name(code: &str) -> Option<&'static str> {
    let code = normalize_country(code)?;
    COUNTRIES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The flag emoji of an ISO code: two regional-indicator symbols (`SE` → 🇸🇪).
pub fn flag(code: &str) -> Option<String> {
    let code = normalize_country(code)?;
    Some(
        code.chars()
            .map(|c| char::from_u32(0x1F1E6 + (c as u32 - 'A' as u32)).expect("A-Z maps"))
            .collect(),
    )
}

/// Guesses the location from a file name and the file's comments.
///
/// - File names: the first token of two letters that is a country code, then a following
///   three-letter city code of that country (`se-sto-wg-001` → SE, Stockholm;
///   `protonvpn-SE-42` → SE; `us-nyc-wg-301` → US, New York).
/// - Comments: `SE#42` (country code, `#`, number), or a known city's name.
pub fn infer(file_name: &str, text: &str) -> Location {
    let stem = file_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(file_name)
        .trim_end_matches(".conf");
    let tokens: Vec<&str> = stem
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.len() != 2 || !t.chars().all(|c| c.is_ascii_alphabetic()) {
            continue;
        }
        if let Some(country) = normalize_country(t) {
            let city = tokens
                .get(i + 1)
                .and_then(|next| city_by_code(country, next))
                .map(str::to_string);
            return Location {
                country: Some(country.to_string()),
                city,
            };
        }
    }
    for line in text.lines() {
        let Some((_, comment)) = line.split_once('#') else {
            continue;
        };
        let comment = comment.trim();
        // "SE#42": the comment itself is "SE#42" when the line is "# SE#42".
        if let Some((cc, num)) = comment.split_once('#') {
            if num.chars().next().is_some_and(|c| c.is_ascii_digit()) && cc.len() == 2 {
                if let Some(country) = normalize_country(cc) {
                    return Location {
                        country: Some(country.to_string()),
                        city: None,
                    };
                }
            }
        }
        let lower = comment.to_lowercase();
        for (cc, _, city) in CITIES {
            if contains_word(&lower, &city.to_lowercase()) {
                return Location {
                    country: Some(cc.to_string()),
                    city: Some(city.to_string()),
                };
            }
        }
    }
    Location::default()
}

fn contains_word(haystack: &str, word: &str) -> bool {
    haystack.match_indices(word).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

fn city_by_code(country: &str, code: &str) -> Option<&'static str> {
    let code = code.to_ascii_lowercase();
    CITIES
        .iter()
        .find(|(cc, c, _)| *cc == country && *c == code)
        .map(|(_, _, name)| *name)
}

/// City codes as VPN providers use them in server names (IATA-like, three letters).
const CITIES: &[(&str, &str, &str)] = &[
    ("AT", "vie", "Vienna"),
    ("AU", "adl", "Adelaide"),
    ("AU", "bne", "Brisbane"),
    ("AU", "mel", "Melbourne"),
    ("AU", "per", "Perth"),
    ("AU", "syd", "Sydney"),
    ("BE", "bru", "Brussels"),
    ("BG", "sof", "Sofia"),
    ("BR", "sao", "São Paulo"),
    ("CA", "mtr", "Montreal"),
    ("CA", "tor", "Toronto"),
    ("CA", "van", "Vancouver"),
    ("CH", "zrh", "Zurich"),
    ("CZ", "prg", "Prague"),
    ("DE", "ber", "Berlin"),
    ("DE", "dus", "Düsseldorf"),
    ("DE", "fra", "Frankfurt"),
    ("DK", "cph", "Copenhagen"),
    ("EE", "tll", "Tallinn"),
    ("ES", "bcn", "Barcelona"),
    ("ES", "mad", "Madrid"),
    ("ES", "vlc", "Valencia"),
    ("FI", "hel", "Helsinki"),
    ("FR", "bod", "Bordeaux"),
    ("FR", "mrs", "Marseille"),
    ("FR", "par", "Paris"),
    ("GB", "glw", "Glasgow"),
    ("GB", "lon", "London"),
    ("GB", "mnc", "Manchester"),
    ("GR", "ath", "Athens"),
    ("HK", "hkg", "Hong Kong"),
    ("HR", "zag", "Zagreb"),
    ("HU", "bud", "Budapest"),
    ("IE", "dub", "Dublin"),
    ("IL", "tlv", "Tel Aviv"),
    ("IT", "mil", "Milan"),
    ("IT", "pmo", "Palermo"),
    ("JP", "osa", "Osaka"),
    ("JP", "tyo", "Tokyo"),
    ("NL", "ams", "Amsterdam"),
    ("NO", "osl", "Oslo"),
    ("NO", "svg", "Stavanger"),
    ("NZ", "akl", "Auckland"),
    ("PL", "waw", "Warsaw"),
    ("PT", "lis", "Lisbon"),
    ("RO", "buh", "Bucharest"),
    ("RS", "beg", "Belgrade"),
    ("SE", "got", "Gothenburg"),
    ("SE", "mma", "Malmö"),
    ("SE", "sto", "Stockholm"),
    ("SG", "sin", "Singapore"),
    ("SK", "bts", "Bratislava"),
    ("US", "atl", "Atlanta"),
    ("US", "chi", "Chicago"),
    ("US", "dal", "Dallas"),
    ("US", "den", "Denver"),
    ("US", "lax", "Los Angeles"),
    ("US", "mia", "Miami"),
    ("US", "nyc", "New York"),
    ("US", "phx", "Phoenix"),
    ("US", "sea", "Seattle"),
    ("US", "sjc", "San Jose"),
    ("US", "slc", "Salt Lake City"),
    ("US", "was", "Washington"),
    ("ZA", "jnb", "Johannesburg"),
];

/// ISO 3166-1 alpha-2 codes and English short names.
pub const COUNTRIES: &[(&str, &str)] = &[
    ("AD", "Andorra"),
    ("AE", "United Arab Emirates"),
    ("AF", "Afghanistan"),
    ("AG", "Antigua and Barbuda"),
    ("AI", "Anguilla"),
    ("AL", "Albania"),
    ("AM", "Armenia"),
    ("AO", "Angola"),
    ("AQ", "Antarctica"),
    ("AR", "Argentina"),
    ("AS", "American Samoa"),
    ("AT", "Austria"),
    ("AU", "Australia"),
    ("AW", "Aruba"),
    ("AX", "Åland Islands"),
    ("AZ", "Azerbaijan"),
    ("BA", "Bosnia and Herzegovina"),
    ("BB", "Barbados"),
    ("BD", "Bangladesh"),
    ("BE", "Belgium"),
    ("BF", "Burkina Faso"),
    ("BG", "Bulgaria"),
    ("BH", "Bahrain"),
    ("BI", "Burundi"),
    ("BJ", "Benin"),
    ("BL", "Saint Barthélemy"),
    ("BM", "Bermuda"),
    ("BN", "Brunei"),
    ("BO", "Bolivia"),
    ("BQ", "Caribbean Netherlands"),
    ("BR", "Brazil"),
    ("BS", "Bahamas"),
    ("BT", "Bhutan"),
    ("BV", "Bouvet Island"),
    ("BW", "Botswana"),
    ("BY", "Belarus"),
    ("BZ", "Belize"),
    ("CA", "Canada"),
    ("CC", "Cocos (Keeling) Islands"),
    ("CD", "DR Congo"),
    ("CF", "Central African Republic"),
    ("CG", "Congo"),
    ("CH", "Switzerland"),
    ("CI", "Côte d'Ivoire"),
    ("CK", "Cook Islands"),
    ("CL", "Chile"),
    ("CM", "Cameroon"),
    ("CN", "China"),
    ("CO", "Colombia"),
    ("CR", "Costa Rica"),
    ("CU", "Cuba"),
    ("CV", "Cape Verde"),
    ("CW", "Curaçao"),
    ("CX", "Christmas Island"),
    ("CY", "Cyprus"),
    ("CZ", "Czechia"),
    ("DE", "Germany"),
    ("DJ", "Djibouti"),
    ("DK", "Denmark"),
    ("DM", "Dominica"),
    ("DO", "Dominican Republic"),
    ("DZ", "Algeria"),
    ("EC", "Ecuador"),
    ("EE", "Estonia"),
    ("EG", "Egypt"),
    ("EH", "Western Sahara"),
    ("ER", "Eritrea"),
    ("ES", "Spain"),
    ("ET", "Ethiopia"),
    ("FI", "Finland"),
    ("FJ", "Fiji"),
    ("FK", "Falkland Islands"),
    ("FM", "Micronesia"),
    ("FO", "Faroe Islands"),
    ("FR", "France"),
    ("GA", "Gabon"),
    ("GB", "United Kingdom"),
    ("GD", "Grenada"),
    ("GE", "Georgia"),
    ("GF", "French Guiana"),
    ("GG", "Guernsey"),
    ("GH", "Ghana"),
    ("GI", "Gibraltar"),
    ("GL", "Greenland"),
    ("GM", "Gambia"),
    ("GN", "Guinea"),
    ("GP", "Guadeloupe"),
    ("GQ", "Equatorial Guinea"),
    ("GR", "Greece"),
    ("GS", "South Georgia and the South Sandwich Islands"),
    ("GT", "Guatemala"),
    ("GU", "Guam"),
    ("GW", "Guinea-Bissau"),
    ("GY", "Guyana"),
    ("HK", "Hong Kong"),
    ("HM", "Heard Island and McDonald Islands"),
    ("HN", "Honduras"),
    ("HR", "Croatia"),
    ("HT", "Haiti"),
    ("HU", "Hungary"),
    ("ID", "Indonesia"),
    ("IE", "Ireland"),
    ("IL", "Israel"),
    ("IM", "Isle of Man"),
    ("IN", "India"),
    ("IO", "British Indian Ocean Territory"),
    ("IQ", "Iraq"),
    ("IR", "Iran"),
    ("IS", "Iceland"),
    ("IT", "Italy"),
    ("JE", "Jersey"),
    ("JM", "Jamaica"),
    ("JO", "Jordan"),
    ("JP", "Japan"),
    ("KE", "Kenya"),
    ("KG", "Kyrgyzstan"),
    ("KH", "Cambodia"),
    ("KI", "Kiribati"),
    ("KM", "Comoros"),
    ("KN", "Saint Kitts and Nevis"),
    ("KP", "North Korea"),
    ("KR", "South Korea"),
    ("KW", "Kuwait"),
    ("KY", "Cayman Islands"),
    ("KZ", "Kazakhstan"),
    ("LA", "Laos"),
    ("LB", "Lebanon"),
    ("LC", "Saint Lucia"),
    ("LI", "Liechtenstein"),
    ("LK", "Sri Lanka"),
    ("LR", "Liberia"),
    ("LS", "Lesotho"),
    ("LT", "Lithuania"),
    ("LU", "Luxembourg"),
    ("LV", "Latvia"),
    ("LY", "Libya"),
    ("MA", "Morocco"),
    ("MC", "Monaco"),
    ("MD", "Moldova"),
    ("ME", "Montenegro"),
    ("MF", "Saint Martin"),
    ("MG", "Madagascar"),
    ("MH", "Marshall Islands"),
    ("MK", "North Macedonia"),
    ("ML", "Mali"),
    ("MM", "Myanmar"),
    ("MN", "Mongolia"),
    ("MO", "Macao"),
    ("MP", "Northern Mariana Islands"),
    ("MQ", "Martinique"),
    ("MR", "Mauritania"),
    ("MS", "Montserrat"),
    ("MT", "Malta"),
    ("MU", "Mauritius"),
    ("MV", "Maldives"),
    ("MW", "Malawi"),
    ("MX", "Mexico"),
    ("MY", "Malaysia"),
    ("MZ", "Mozambique"),
    ("NA", "Namibia"),
    ("NC", "New Caledonia"),
    ("NE", "Niger"),
    ("NF", "Norfolk Island"),
    ("NG", "Nigeria"),
    ("NI", "Nicaragua"),
    ("NL", "Netherlands"),
    ("NO", "Norway"),
    ("NP", "Nepal"),
    ("NR", "Nauru"),
    ("NU", "Niue"),
    ("NZ", "New Zealand"),
    ("OM", "Oman"),
    ("PA", "Panama"),
    ("PE", "Peru"),
    ("PF", "French Polynesia"),
    ("PG", "Papua New Guinea"),
    ("PH", "Philippines"),
    ("PK", "Pakistan"),
    ("PL", "Poland"),
    ("PM", "Saint Pierre and Miquelon"),
    ("PN", "Pitcairn Islands"),
    ("PR", "Puerto Rico"),
    ("PS", "Palestine"),
    ("PT", "Portugal"),
    ("PW", "Palau"),
    ("PY", "Paraguay"),
    ("QA", "Qatar"),
    ("RE", "Réunion"),
    ("RO", "Romania"),
    ("RS", "Serbia"),
    ("RU", "Russia"),
    ("RW", "Rwanda"),
    ("SA", "Saudi Arabia"),
    ("SB", "Solomon Islands"),
    ("SC", "Seychelles"),
    ("SD", "Sudan"),
    ("SE", "Sweden"),
    ("SG", "Singapore"),
    ("SH", "Saint Helena"),
    ("SI", "Slovenia"),
    ("SJ", "Svalbard and Jan Mayen"),
    ("SK", "Slovakia"),
    ("SL", "Sierra Leone"),
    ("SM", "San Marino"),
    ("SN", "Senegal"),
    ("SO", "Somalia"),
    ("SR", "Suriname"),
    ("SS", "South Sudan"),
    ("ST", "São Tomé and Príncipe"),
    ("SV", "El Salvador"),
    ("SX", "Sint Maarten"),
    ("SY", "Syria"),
    ("SZ", "Eswatini"),
    ("TC", "Turks and Caicos Islands"),
    ("TD", "Chad"),
    ("TF", "French Southern Territories"),
    ("TG", "Togo"),
    ("TH", "Thailand"),
    ("TJ", "Tajikistan"),
    ("TK", "Tokelau"),
    ("TL", "Timor-Leste"),
    ("TM", "Turkmenistan"),
    ("TN", "Tunisia"),
    ("TO", "Tonga"),
    ("TR", "Türkiye"),
    ("TT", "Trinidad and Tobago"),
    ("TV", "Tuvalu"),
    ("TW", "Taiwan"),
    ("TZ", "Tanzania"),
    ("UA", "Ukraine"),
    ("UG", "Uganda"),
    ("UM", "U.S. Outlying Islands"),
    ("US", "United States"),
    ("UY", "Uruguay"),
    ("UZ", "Uzbekistan"),
    ("VA", "Vatican City"),
    ("VC", "Saint Vincent and the Grenadines"),
    ("VE", "Venezuela"),
    ("VG", "British Virgin Islands"),
    ("VI", "U.S. Virgin Islands"),
    ("VN", "Vietnam"),
    ("VU", "Vanuatu"),
    ("WF", "Wallis and Futuna"),
    ("WS", "Samoa"),
    ("YE", "Yemen"),
    ("YT", "Mayotte"),
    ("ZA", "South Africa"),
    ("ZM", "Zambia"),
    ("ZW", "Zimbabwe"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(country: Option<&str>, city: Option<&str>) -> Location {
        Location {
            country: country.map(Into::into),
            city: city.map(Into::into),
        }
    }

    #[test]
    fn provider_file_names_give_country_and_city() {
        assert_eq!(
            infer("se-sto-wg-001.conf", ""),
            loc(Some("SE"), Some("Stockholm"))
        );
        assert_eq!(
            infer("/x/us-nyc-wg-301.conf", ""),
            loc(Some("US"), Some("New York"))
        );
        assert_eq!(infer("protonvpn-SE-42.conf", ""), loc(Some("SE"), None));
        assert_eq!(infer("uk-lon-7.conf", ""), loc(Some("GB"), Some("London")));
        assert_eq!(infer("de-xyz-1.conf", ""), loc(Some("DE"), None));
        assert_eq!(infer("homelab.conf", ""), Location::default());
        assert_eq!(infer("wg0.conf", ""), Location::default());
    }

    #[test]
    fn comments_give_a_location_when_the_name_does_not() {
        assert_eq!(
            infer("server.conf", "[Peer]\n# SE#42\n"),
            loc(Some("SE"), None)
        );
        assert_eq!(
            infer("server.conf", "# Location: Frankfurt am Main\n"),
            loc(Some("DE"), Some("Frankfurt"))
        );
        assert_eq!(
            infer("server.conf", "# Parisian cafe\n"),
            Location::default(),
            "whole words only"
        );
    }

    #[test]
    fn country_names_and_flags() {
        assert_eq!(country_name("se"), Some("Sweden"));
        assert_eq!(country_name("UK"), Some("United Kingdom"));
        assert_eq!(country_name("XX"), None);
        assert_eq!(flag("SE").as_deref(), Some("\u{1F1F8}\u{1F1EA}"));
        assert_eq!(COUNTRIES.len(), 249);
        assert!(COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    }

    /// The app's picker shows `assets/flags/xx.svg` (ui/src/flags.ts) for every country here,
    /// and the globe only for servers of no known country.
    #[test]
    fn every_country_has_a_flag_image() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/flags");
        let missing: Vec<&str> = COUNTRIES
            .iter()
            .map(|(code, _)| *code)
            .filter(|code| {
                let path = dir.join(format!("{}.svg", code.to_ascii_lowercase()));
                !std::fs::read_to_string(&path).is_ok_and(|svg| svg.starts_with("<svg"))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "no flag in {}: {missing:?}",
            dir.display()
        );
        assert!(dir.join("unknown.svg").is_file());
    }
}
