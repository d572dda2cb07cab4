//! `misbehave`: a guest that fails on connect on purpose, to prove the host contains it.
//! `settings.mode`: `"loop"` spins forever, `"oom"` allocates without end, `"trap"` traps;
//! anything else accepts.

use wasmgate_guest::*;

#[derive(Default)]
struct Misbehave {
    mode: String,
    hoard: Vec<Vec<u8>>,
}

impl App for Misbehave {
    fn start(&mut self, _app: &str, _instance: &str, settings: &Value) -> Result<(), String> {
        self.mode = settings
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Ok(())
    }

    fn on_connect(&mut self, _client: &ClientInfo, _args: &[Value]) -> ConnectDecision {
        match self.mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "oom" => loop {
                let mut block = vec![0u8; 1 << 20];
                // Touch the pages so the allocation is real.
                block[0] = 1;
                self.hoard.push(block);
            },
            "trap" => {
                let v: Vec<u32> = Vec::new();
                let i = std::hint::black_box(3);
                ConnectDecision::Reject(format!("unreachable {}", v[i]))
            }
            _ => ConnectDecision::Accept,
        }
    }
}

export_app!(Misbehave);
