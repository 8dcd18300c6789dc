# Co-DINO (Co-DETR's collaborative hybrid assignments on DINO, Zong et al., ICCV 2023) on the SoMA DINOv2-L trunk:
# the detector of SoMA's published DWD numbers, with the values of the official release's DWD model. 5 feature
# levels (the backbone's strides 4-32 + the neck's extra stride-64 map), 900 queries with denoising,
# QualityFocalLoss (beta 2) + L1 5 + GIoU 2; for training only, an RPN + Faster R-CNN RoI head and an ATSS head on
# the encoder's output (+ one stride-128 map), whose positives are fed back to the decoder as positive query groups;
# soft-NMS (IoU 0.8, 300 boxes) at test. soma/models/detectors/co_dino.py explains the algorithm.
_base_ = ["./dinov2-l_soma_det.py"]

num_classes = 7  # DWD; set per dataset (query head, roi_head.bbox_head and the ATSS head)
num_levels = 5
aux_strides = [4, 8, 16, 32, 64, 128]  # the encoder's 5 maps + the detector's downsampled one
num_dec_layer = 6
loss_lambda = 2.0
aux_weight = num_dec_layer * loss_lambda  # x12: Co-DETR scales every auxiliary-head loss by this
model = dict(
    type="CoDINO",
    # The 14x14 patch kernel resampled to 16x16 (bicubic, as the release) at img_size 1024:
    #   python tools/convert_models/dinov2.py ... --patch-resample bicubic (docs/ names the exact command)
    backbone=dict(init_cfg=dict(checkpoint="checkpoints/dinov2_vitl14_patch16-bicubic.pth")),
    neck=dict(num_outs=num_levels),  # the 5th map: a stride-2 3x3 conv (+GN) on the stride-32 level
    num_queries=900,
    with_box_refine=True,
    as_two_stage=True,
    num_feature_levels=num_levels,
    encoder=dict(
        num_layers=6,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=256, num_levels=num_levels, dropout=0.0),
            ffn_cfg=dict(embed_dims=256, feedforward_channels=2048, ffn_drop=0.0))),
    decoder=dict(
        num_layers=num_dec_layer,
        return_intermediate=True,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=256, num_heads=8, dropout=0.0),
            cross_attn_cfg=dict(embed_dims=256, num_levels=num_levels, dropout=0.0),
            ffn_cfg=dict(embed_dims=256, feedforward_channels=2048, ffn_drop=0.0)),
        post_norm_cfg=None),
    positional_encoding=dict(num_feats=128, normalize=True, offset=0.0, temperature=20),
    bbox_head=dict(
        type="CoDINOHead",
        num_classes=num_classes,
        embed_dims=256,
        sync_cls_avg_factor=False,  # the release's CoDINOHead default
        loss_cls=dict(type="QualityFocalLoss", use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=5.0),
        loss_iou=dict(type="GIoULoss", loss_weight=2.0)),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100)),
    train_cfg=dict(
        assigner=dict(
            type="HungarianAssigner",
            match_costs=[
                dict(type="FocalLossCost", weight=2.0),
                dict(type="BBoxL1Cost", weight=5.0, box_format="xywh"),
                dict(type="IoUCost", iou_mode="giou", weight=2.0),
            ])),
    test_cfg=dict(max_per_img=300, nms=dict(type="soft_nms", iou_threshold=0.8)),
    # Auxiliary heads (training only), on the encoder's 5 maps + 1 downsampled map.
    rpn_head=dict(
        type="RPNHead",
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3,
                              ratios=[0.5, 1.0, 2.0], strides=aux_strides),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0 * aux_weight),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0 * aux_weight),
        train_cfg=dict(
            assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                          match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        test_cfg=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0)),
    rpn_proposal=dict(nms_pre=4000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
    roi_head=dict(
        type="CoStandardRoIHead",
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=aux_strides[:5],
            finest_scale=56),
        bbox_head=dict(
            type="Shared2FCBBoxHead",
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=num_classes,
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0 * aux_weight),
            loss_bbox=dict(type="GIoULoss", loss_weight=10.0 * aux_weight)),
        train_cfg=dict(
            assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                          match_low_quality=False, ignore_iof_thr=-1),
            sampler=dict(type="RandomSampler", num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False),
        test_cfg=dict(score_thr=0.0, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100)),
    aux_heads=[
        dict(
            type="CoATSSHead",
            num_classes=num_classes,
            in_channels=256,
            stacked_convs=1,
            feat_channels=256,
            anchor_generator=dict(type="AnchorGenerator", ratios=[1.0], octave_base_scale=8, scales_per_octave=1,
                                  strides=aux_strides),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
            loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0 * aux_weight),
            loss_bbox=dict(type="GIoULoss", loss_weight=2.0 * aux_weight),
            loss_centerness=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0 * aux_weight),
            train_cfg=dict(assigner=dict(type="ATSSAssigner", topk=9), allowed_border=-1, pos_weight=-1, debug=False),
            test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.0, nms=dict(type="nms", iou_threshold=0.6),
                          max_per_img=100)),
    ],
    max_positive_queries=300,
    min_positive_queries=9,
)
