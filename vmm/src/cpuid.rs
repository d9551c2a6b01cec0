//! CPUID for guests: KVM's supported set, filtered (hypervisor bit, topology).

use kvm_bindings::CpuId;

/// Adjusts `cpuid` for vCPU `id` of `count` vCPUs.
pub fn filter(cpuid: &mut CpuId, id: u8, count: u8) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                // EBX[31:24] initial APIC id, [23:16] logical processor count, [15:8] CLFLUSH size.
                e.ebx = (u32::from(id) << 24) | (u32::from(count) << 16) | (8 << 8);
                // ECX bit 31: running under a hypervisor.
                e.ecx |= 1 << 31;
                // EDX bit 28 (HTT) tells the guest EBX[23:16] is valid.
                if count > 1 {
                    e.edx |= 1 << 28;
                }
            }
            0xb | 0x1f => {
                // x2APIC id of this vCPU.
                e.edx = u32::from(id);
            }
            _ => {}
        }
    }
}
