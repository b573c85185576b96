//! `sdf::vmm_constants` on small system descriptions: one VMM, two alike
//! VMMs with vsock, and the mistakes it must name.

use libvmm_build::sdf::vmm_constants;

fn vmm(name: &str, ram: &str, vcpus: usize, vsock: Option<(&str, &str)>) -> String {
    let mut maps = format!(
        r#"<map mr="{ram}" vaddr="0x20000000" setvar_vaddr="guest_ram_vaddr" />
        <irq irq="30" id="0" />"#
    );
    if let Some((tx, rx)) = vsock {
        maps += &format!(
            r#"<map mr="{tx}" vaddr="0x7000000" setvar_vaddr="vsock_tx" />
            <map mr="{rx}" vaddr="0x7400000" setvar_vaddr="vsock_rx" />"#
        );
    }
    let cpus: String = (0..vcpus).map(|i| format!(r#"<vcpu id="{i}" />"#)).collect();
    format!(
        r#"<protection_domain name="{name}" priority="150">
        <program_image path="vmm.elf" />
        {maps}
        <virtual_machine name="{name}_linux" priority="100">
            {cpus}
            <map mr="{ram}" vaddr="0x40000000" perms="rwx" />
        </virtual_machine>
    </protection_domain>"#
    )
}

fn system(pds: &[String]) -> String {
    format!(
        r#"<system>
    <memory_region name="ram1" size="0x10000000" />
    <memory_region name="ram2" size="0x10000000" />
    <memory_region name="ram3" size="0x8000000" />
    {}
</system>"#,
        pds.concat()
    )
}

#[test]
fn one_vmm_without_vsock() {
    let out = vmm_constants(&system(&[vmm("vmm", "ram1", 1, None)])).unwrap();
    assert!(out.contains("GUEST_RAM_GPA: u64 = 0x40000000;"), "{out}");
    assert!(out.contains("GUEST_RAM_SIZE: u64 = 0x10000000;"), "{out}");
    assert!(out.contains("NUM_VCPUS: usize = 1;"), "{out}");
    assert!(
        out.contains("TIMER: ::libvmm::vm::Timer = ::libvmm::vm::Timer::Physical(0);"),
        "{out}"
    );
    assert!(out.contains("VSOCK_CIDS: &[(&str, u32, u32)] = &[];"), "{out}");
}

#[test]
fn two_alike_vmms_get_their_cids_from_the_region_names() {
    let xml = system(&[
        vmm("vmm1", "ram1", 1, Some(("vsock_3_to_4", "vsock_4_to_3"))),
        vmm("vmm2", "ram2", 1, Some(("vsock_4_to_3", "vsock_3_to_4"))),
    ]);
    let out = vmm_constants(&xml).unwrap();
    assert!(
        out.contains(r#"VSOCK_CIDS: &[(&str, u32, u32)] = &[("vmm1", 3, 4), ("vmm2", 4, 3), ];"#),
        "{out}"
    );
}

#[test]
fn vmms_that_differ_are_refused() {
    let e = vmm_constants(&system(&[vmm("a", "ram1", 1, None), vmm("b", "ram3", 1, None)]))
        .unwrap_err();
    assert!(e.contains(r#""a" and "b" differ"#), "{e}");
    let e = vmm_constants(&system(&[vmm("a", "ram1", 1, None), vmm("b", "ram2", 2, None)]))
        .unwrap_err();
    assert!(e.contains("differ"), "{e}");
}

#[test]
fn bad_vsock_wiring_is_named() {
    let one = |tx, rx| vmm_constants(&system(&[vmm("v", "ram1", 1, Some((tx, rx)))])).unwrap_err();
    assert!(one("vsock_3_to_4", "vsock_3_to_4").contains(r#"must receive on "vsock_4_to_3""#));
    assert!(one("vsock_a_to_4", "vsock_4_to_3").contains("is not named vsock_<cid>_to_<peer cid>"));
    assert!(one("vsock_2_to_4", "vsock_4_to_2").contains("CID 2 is reserved"));
    assert!(one("vsock_5_to_5", "vsock_5_to_5").contains("same CID 5"));
    let e = vmm_constants(&system(&[
        vmm("a", "ram1", 1, Some(("vsock_3_to_4", "vsock_4_to_3"))),
        vmm("b", "ram2", 1, Some(("vsock_3_to_5", "vsock_5_to_3"))),
    ]))
    .unwrap_err();
    assert!(e.contains("CID 3 is given to two guests"), "{e}");
}

#[test]
fn a_register_page_the_vm_maps_read_only_is_not_guest_ram() {
    let regs = r#"<map mr="regs" vaddr="0x7000000" perms="rw" cached="false" setvar_vaddr="console_regs" />"#;
    let vm_regs = r#"<map mr="regs" vaddr="0x130000" perms="r" cached="false" />"#;
    let xml = system(&[vmm("vmm", "ram1", 1, None)])
        .replace(r#"<irq irq="30" id="0" />"#, &format!(r#"<irq irq="30" id="0" />{regs}"#))
        .replace(
            r#"<map mr="ram1" vaddr="0x40000000" perms="rwx" />"#,
            &format!(r#"<map mr="ram1" vaddr="0x40000000" perms="rwx" />{vm_regs}"#),
        )
        .replace("<system>", r#"<system><memory_region name="regs" size="0x1000" />"#);
    let out = vmm_constants(&xml).unwrap();
    assert!(out.contains("GUEST_RAM_GPA: u64 = 0x40000000;"), "{out}");
    assert!(out.contains("GUEST_RAM_SIZE: u64 = 0x10000000;"), "{out}");
    // Mapped writable by the VM as well, it is a second candidate: refused.
    let e = vmm_constants(&xml.replace(r#"perms="r" cached"#, r#"perms="rw" cached"#)).unwrap_err();
    assert!(e.contains("ambiguous"), "{e}");
}
