//! The symbols and queues both serial virtualisers have: the driver's queue
//! and up to four clients' (`client0`..`client3`; unmapped ones are absent).
//! Included by `serial_virt_tx` and `serial_virt_rx` (`#[path]`).

use super::pd;
use libvmm::microkit::Patched;
use sddf_bindings::serial::SerialQueueHandle;

libvmm::setvar! {
    pub static drv_ch; static drv_queue; static drv_queue_size; static drv_data; static drv_data_size;
    static client0_ch; static client0_queue; static client0_queue_size; static client0_data; static client0_data_size;
    static client1_ch; static client1_queue; static client1_queue_size; static client1_data; static client1_data_size;
    static client2_ch; static client2_queue; static client2_queue_size; static client2_data; static client2_data_size;
    static client3_ch; static client3_queue; static client3_queue_size; static client3_data; static client3_data_size;
}

/// The driver's queue.
pub fn driver_queue() -> Option<SerialQueueHandle> {
    pd::serial_queue("driver queue", (&drv_queue, &drv_queue_size), (&drv_data, &drv_data_size))
}

fn client(
    ch: &'static Patched<u64>,
    queue: pd::Symbols,
    data: pd::Symbols,
) -> Option<(SerialQueueHandle, u8)> {
    Some((pd::serial_queue("client queue", queue, data)?, pd::channel(ch)))
}

/// Each mapped client's queue and channel.
pub fn clients() -> [Option<(SerialQueueHandle, u8)>; 4] {
    [
        client(
            &client0_ch,
            (&client0_queue, &client0_queue_size),
            (&client0_data, &client0_data_size),
        ),
        client(
            &client1_ch,
            (&client1_queue, &client1_queue_size),
            (&client1_data, &client1_data_size),
        ),
        client(
            &client2_ch,
            (&client2_queue, &client2_queue_size),
            (&client2_data, &client2_data_size),
        ),
        client(
            &client3_ch,
            (&client3_queue, &client3_queue_size),
            (&client3_data, &client3_data_size),
        ),
    ]
}
