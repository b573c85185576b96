//! `sound_virt`: the sDDF sound virtualiser PD (`sddf_components::sound::virt`)
//! between the HDA driver and up to two clients (`client0_*`, `client1_*`
//! symbols; a client whose regions are not mapped is left out).

#![no_std]
#![no_main]

use libvmm::logging::{self, Levels};
use libvmm::microkit::{shared_region, Channel, ChannelSet, Handler, Patched};
use log::{error, LevelFilter};
use sddf_bindings::sound::{SoundQueues, SoundSharedStateHandle};
use sddf_components::sound::virt::{Client, Driver, SoundVirt};
use sddf_components::Notify;

libvmm::setvar! {
    static drv_ch; static drv_cmd_req; static drv_cmd_req_size; static drv_cmd_res;
    static drv_cmd_res_size; static drv_pcm_req; static drv_pcm_req_size; static drv_pcm_res;
    static drv_pcm_res_size; static drv_state; static drv_state_size;
    static client0_ch; static client0_cmd_req; static client0_cmd_req_size; static client0_cmd_res;
    static client0_cmd_res_size; static client0_pcm_req; static client0_pcm_req_size;
    static client0_pcm_res; static client0_pcm_res_size; static client0_state;
    static client0_state_size; static client0_data_paddr; static client0_data_size;
    static client1_ch; static client1_cmd_req; static client1_cmd_req_size; static client1_cmd_res;
    static client1_cmd_res_size; static client1_pcm_req; static client1_pcm_req_size;
    static client1_pcm_res; static client1_pcm_res_size; static client1_state;
    static client1_state_size; static client1_data_paddr; static client1_data_size;
}

/// Buffers in flight at the driver at most (the driver's PCM ring).
const SLOTS: usize = 256;

type Symbols = (&'static Patched<u64>, &'static Patched<u64>);

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

/// A connection's rings, from the regions the system description names
/// `cmd_req`, `cmd_res`, `pcm_req` and `pcm_res` (sDDF's PCM name swap).
fn queues(what: &str, s: [Symbols; 4]) -> Option<SoundQueues> {
    let [a, b, c, d] = s.map(|(v, n)| shared_region(v, n));
    SoundQueues::from_sddf_names(a?, b?, c?, d?)
        .map_err(|e| error!(target: "snd", "{what}: {e}"))
        .ok()
}

fn state(what: &str, (v, n): Symbols) -> Option<SoundSharedStateHandle> {
    SoundSharedStateHandle::new(shared_region(v, n)?)
        .map_err(|e| error!(target: "snd", "{what} state: {e}"))
        .ok()
}

fn client(
    ch: &'static Patched<u64>,
    rings: [Symbols; 4],
    st: Symbols,
    data_paddr: &'static Patched<u64>,
    data_size: &'static Patched<u64>,
) -> Option<Client> {
    Some(Client {
        queues: queues("client", rings)?,
        state: state("client", st)?,
        data_io: data_paddr.get(),
        data_size: data_size.get(),
        channel: ch.get() as u8,
    })
}

fn send(n: Notify) {
    for ch in n.channels().filter_map(Channel::new) {
        ch.notify();
    }
}

struct Virt(Option<SoundVirt<2, SLOTS>>);

fn start() -> Option<SoundVirt<2, SLOTS>> {
    let rings = [
        (&drv_cmd_req, &drv_cmd_req_size),
        (&drv_cmd_res, &drv_cmd_res_size),
        (&drv_pcm_req, &drv_pcm_req_size),
        (&drv_pcm_res, &drv_pcm_res_size),
    ];
    let driver = Driver {
        queues: queues("driver", rings)?,
        state: state("driver", (&drv_state, &drv_state_size))?,
        channel: drv_ch.get() as u8,
    };
    let c0 = client(
        &client0_ch,
        [
            (&client0_cmd_req, &client0_cmd_req_size),
            (&client0_cmd_res, &client0_cmd_res_size),
            (&client0_pcm_req, &client0_pcm_req_size),
            (&client0_pcm_res, &client0_pcm_res_size),
        ],
        (&client0_state, &client0_state_size),
        &client0_data_paddr,
        &client0_data_size,
    );
    let c1 = client(
        &client1_ch,
        [
            (&client1_cmd_req, &client1_cmd_req_size),
            (&client1_cmd_res, &client1_cmd_res_size),
            (&client1_pcm_req, &client1_pcm_req_size),
            (&client1_pcm_res, &client1_pcm_res_size),
        ],
        (&client1_state, &client1_state_size),
        &client1_data_paddr,
        &client1_data_size,
    );
    Some(SoundVirt::new(driver, [c0, c1]))
}

impl Handler for Virt {
    fn init() -> Self {
        logging::init(&LEVELS);
        let mut virt = start();
        if virt.is_none() {
            error!(target: "snd", "the driver's queues and state must be mapped");
        }
        if let Some(v) = virt.as_mut() {
            send(v.handle());
        }
        Virt(virt)
    }

    fn notified(&mut self, _channels: ChannelSet) {
        if let Some(v) = self.0.as_mut() {
            send(v.handle());
        }
    }
}

libvmm::protection_domain!(Virt);
