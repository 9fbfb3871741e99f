mod common;
use common::*;
use ironvirt_devices::block::ImageFormat;

#[test]
fn smoke() {
    let dir = tempdir();
    let raw = p(dir.path(), "a.raw");
    let img = p(dir.path(), "a.qcow2");
    let mut rng = Rng::new(1);
    let data = pattern(&mut rng, 4 << 20);
    write_file(&raw, &data);
    qemu_img_ok(&["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&img)]);
    let mut d = open_rw(&img, ImageFormat::Qcow2);
    assert_same("read", &read_all(d.as_mut()), &data);
    let mut mirror = data.clone();
    for _ in 0..200 {
        random_op(&mut rng, d.as_mut(), &mut mirror, 200_000);
    }
    assert_same("after ops", &read_all(d.as_mut()), &mirror);
    drop(d);
    write_file(&raw, &mirror);
    check(&img, false);
    compare(&img, &raw);
}
