"""Department files for the inbox tests and the ingestion benchmark: the 住建局 permit
system's GBK CSV export (adapters/mappings/zjj-sgxk-accepted.yaml) and the 不动产登记
result XML (zrzyj-bdcdj-result.xsl)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from schemas.identifiers import citizen_check_char

ZJJ_SYSTEM = "320382.zjj.sgxk"
BDC_SYSTEM = "320382.zrzyj.bdcdj"
HEADER = ["办件编号", "行政区划代码", "受理部门", "事项编码", "事项版本", "事项名称", "办件类型", "申请人类型",
          "申请人名称", "申请人证件类型", "申请人证件号码", "法定代表人", "法定代表人证件类型", "法定代表人证件号码",
          "联系电话", "受理渠道", "申请时间", "受理时间", "承诺时限", "承诺办结日期", "项目代码"]


def citizen_id(serial: int) -> str:
    first17 = f"32038219850312{serial % 1000:03d}"
    return first17 + citizen_check_char(first17)


def zjj_row(index: int, tag: str = "20261121") -> list[str]:
    return [f"320382-ZJJ-{tag}-{index:05d}", "320382", "邳州市住房和城乡建设局", "320382-ZJ-SG-0001", "2",
            "建筑工程施工许可证核发", "承诺件", "个人", f"张{index % 100}明", "身份证", citizen_id(index), "", "", "",
            "13852161234", "窗口受理", "2026-11-20 09:02:11", "2026-11-20 09:30:00", "7", "2026-11-30",
            f"2026-320382-47-03-{index % 1000000:06d}"]


def zjj_csv(count: int, *, bad: dict[int, str] | None = None, tag: str = "20261121") -> bytes:
    """`count` data rows in GBK; bad maps a 1-based data row to how it is broken:
    'citizen-id' (wrong check digit), 'case-type' (a value the mapping does not know),
    'bytes' (bytes that are not GBK)."""
    bad = bad or {}
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(HEADER)
    for index in range(1, count + 1):
        row = zjj_row(index, tag)
        how = bad.get(index)
        if how == "citizen-id":
            good = row[10]
            row[10] = good[:-1] + ("0" if good[-1] != "0" else "1")
        elif how == "case-type":
            row[6] = "加急件"
        elif how == "bytes":
            row[8] = "\udcff\udcfe"  # written as the raw bytes FF FE: not GBK
        writer.writerow(row)
    return text.getvalue().encode("gbk", "surrogateescape")


def bdc_xml(count: int, *, bad: set[int] = frozenset()) -> bytes:
    records = []
    for index in range(1, count + 1):
        result = "9" if index in bad else "1"
        records.append(
            f"<JL><YWH>320382-BDC-20261121-{index:05d}</YWH><JGDM>{result}</JGDM>"
            f"<SLSJ>2026-11-20 09:30:00</SLSJ><BJSJ>2026-11-21 15:00:00</BJSJ><BLR>李娜</BLR>"
            f"<BJMS>准予登记</BJMS><ZSMC>不动产权证书</ZSMC><ZSBH>320382BDC2026{index:06d}</ZSBH><SF>80.00</SF></JL>")
    text = ('<?xml version="1.0" encoding="GB18030"?>\n<BDCDJ_BJJG><JLS>' + "".join(records)
            + "</JLS></BDCDJ_BJJG>\n")
    return text.encode("gb18030")


def drop(directory: Path, name: str, data: bytes) -> Path:
    """Write as a well-behaved department does: a temporary name, then rename."""
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f"{name}.part"
    temporary.write_bytes(data)
    temporary.rename(directory / name)
    return directory / name
